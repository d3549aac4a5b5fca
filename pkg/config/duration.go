package config

import (
	"errors"
	"fmt"
	"math"
	"regexp"
	"strconv"
	"time"
)

// Duration is a time.Duration that reads from configuration as a Go duration
// string ("90s", "1h30m", "8760h"; no days) or as a plain number of seconds
// (30, 0.5, or the string "30" from an environment variable). Negative values
// are rejected. It prints as a Go duration string. Convert with D().
type Duration time.Duration

// D returns d as a time.Duration.
func (d Duration) D() time.Duration { return time.Duration(d) }

// String returns the Go duration string, e.g. "1h0m0s".
func (d Duration) String() string { return time.Duration(d).String() }

// MarshalText implements encoding.TextMarshaler.
func (d Duration) MarshalText() ([]byte, error) { return []byte(d.String()), nil }

// UnmarshalText implements encoding.TextUnmarshaler with the rules above.
func (d *Duration) UnmarshalText(b []byte) error {
	v, err := parseDuration(string(b))
	if err != nil {
		return err
	}
	*d = v
	return nil
}

var plainSeconds = regexp.MustCompile(`^[0-9]+(\.[0-9]+)?$`)

func parseDuration(s string) (Duration, error) {
	if plainSeconds.MatchString(s) {
		f, err := strconv.ParseFloat(s, 64)
		if err != nil {
			return 0, fmt.Errorf("invalid duration %q", s)
		}
		return secondsToDuration(f)
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return 0, fmt.Errorf("invalid duration %q: want a Go duration such as \"90s\" or \"8760h\", or a number of seconds", s)
	}
	if v < 0 {
		return 0, fmt.Errorf("invalid duration %q: must not be negative", s)
	}
	return Duration(v), nil
}

var errDurationRange = errors.New("duration out of range")

func secondsToDuration(f float64) (Duration, error) {
	if math.IsNaN(f) || f < 0 || f*float64(time.Second) >= math.MaxInt64 {
		return 0, errDurationRange
	}
	return Duration(math.Round(f * float64(time.Second))), nil
}
