package apiconv

import (
	"math"
	"strconv"
	"time"

	"github.com/talos-project/talos/pkg/credential"
)

var units = map[string]float64{
	"ns": float64(time.Nanosecond),
	"us": float64(time.Microsecond),
	"µs": float64(time.Microsecond),
	"ms": float64(time.Millisecond),
	"s":  float64(time.Second),
	"m":  float64(time.Minute),
	"h":  float64(time.Hour),
	"d":  float64(24 * time.Hour),
	"w":  float64(7 * 24 * time.Hour),
	"mo": float64(30 * 24 * time.Hour),
	"y":  float64(365 * 24 * time.Hour),
}

// ParseDuration parses the duration syntax Ory Talos accepts: protobuf
// Duration strings ("3600s", "1.5s"), Go durations ("24h", "1h30m") and the
// extended units d, w, mo (30 days) and y (365 days), compounds included
// ("1y6mo"). The empty string is zero. Negative durations are rejected.
func ParseDuration(s string) (time.Duration, error) {
	if s == "" {
		return 0, nil
	}
	if len(s) > 64 {
		return 0, credential.Invalid("duration is too long")
	}
	var total float64
	i := 0
	for i < len(s) {
		j := i
		for j < len(s) && (s[j] >= '0' && s[j] <= '9' || s[j] == '.') {
			j++
		}
		if j == i {
			return 0, credential.Invalid("invalid duration " + strconv.Quote(s))
		}
		n, err := strconv.ParseFloat(s[i:j], 64)
		if err != nil {
			return 0, credential.Invalid("invalid duration " + strconv.Quote(s))
		}
		k := j
		for k < len(s) && !(s[k] >= '0' && s[k] <= '9' || s[k] == '.') {
			k++
		}
		u, ok := units[s[j:k]]
		if !ok {
			return 0, credential.Invalid("invalid duration unit in " + strconv.Quote(s))
		}
		total += n * u
		i = k
	}
	if total > math.MaxInt64 {
		return 0, credential.Invalid("duration " + strconv.Quote(s) + " is too large")
	}
	return time.Duration(total), nil
}

// FormatDuration writes d as a protobuf Duration string ("60s").
func FormatDuration(d time.Duration) string {
	if d%time.Second == 0 {
		return strconv.FormatInt(int64(d/time.Second), 10) + "s"
	}
	return strconv.FormatFloat(d.Seconds(), 'f', -1, 64) + "s"
}
