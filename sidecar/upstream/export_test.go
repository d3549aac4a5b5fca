package upstream

import "time"

// SetJitter replaces the retry delay draw, so tests can make it
// deterministic.
func SetJitter(c *Client, f func(bound time.Duration) time.Duration) { c.jitter = f }
