package apiconv_test

import (
	"errors"
	"testing"
	"time"

	"github.com/talos-project/talos/pkg/apiconv"
	"github.com/talos-project/talos/pkg/credential"
)

func TestParseDuration(t *testing.T) {
	t.Parallel()
	day := 24 * time.Hour
	ok := map[string]time.Duration{
		"": 0, "3600s": time.Hour, "1.5s": 1500 * time.Millisecond, "24h": day, "1h30m": 90 * time.Minute,
		"7d": 7 * day, "2w": 14 * day, "1mo": 30 * day, "1y": 365 * day, "1y6mo": 545 * day, "500ms": 500 * time.Millisecond,
	}
	for in, want := range ok {
		got, err := apiconv.ParseDuration(in)
		if err != nil || got != want {
			t.Errorf("ParseDuration(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	for _, in := range []string{"soon", "-1s", "1", "s", "1x", "1.2.3s", "9999999999999y", "1h 30m"} {
		if _, err := apiconv.ParseDuration(in); !errors.Is(err, credential.ErrInvalidArgument) {
			t.Errorf("ParseDuration(%q) error = %v, want ErrInvalidArgument", in, err)
		}
	}
}

func TestFormatDuration(t *testing.T) {
	t.Parallel()
	for d, want := range map[time.Duration]string{time.Minute: "60s", 1500 * time.Millisecond: "1.5s", 0: "0s"} {
		if got := apiconv.FormatDuration(d); got != want {
			t.Errorf("FormatDuration(%v) = %q, want %q", d, got, want)
		}
	}
}

func FuzzParseDuration(f *testing.F) {
	for _, s := range []string{"1y6mo", "3600s", "1.5s", "9.9e9y"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		d, err := apiconv.ParseDuration(s)
		if err == nil && d < 0 {
			t.Fatalf("ParseDuration(%q) = %v, negative", s, d)
		}
	})
}
