package tlsconf

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"io"
	"log/slog"
	"os"
	"sync"
	"sync/atomic"
	"time"
)

// DefaultCheckInterval is how often, at most, the files of a [Server] or
// [Client] are checked for changes when CheckInterval is zero. A rotation
// therefore reaches new handshakes within about ten seconds of the files
// changing; cert-manager renews certificates well before they expire, so
// that is ample.
const DefaultCheckInterval = 10 * time.Second

// racyWindow is how recent a file's modification time may be for its stat
// not to be trusted: a file rewritten in place within the filesystem's
// timestamp granularity of an earlier check could show the same size and
// time, so for that long after a change every check re-reads and hashes.
const racyWindow = 2 * time.Second

// reloader holds the configuration loaded from a set of files, and replaces
// it when the files change and load.
type reloader[T any] struct {
	what     string   // "server certificate", for log messages
	files    []string // in the order load gets their contents
	load     func(data [][]byte) (*T, error)
	loaded   func(*T, *slog.Logger) // logs a successful load
	interval time.Duration
	now      func() time.Time
	log      *slog.Logger

	cur       atomic.Pointer[T]
	nextCheck atomic.Int64 // Unix nanoseconds of r.now

	mu sync.Mutex // held by the goroutine checking; guards the fields below
	// stats of the files whose contents are loaded, or nil when a check
	// must re-read them whatever their stats say.
	stats  []os.FileInfo
	sum    [sha256.Size]byte // hash of the loaded contents
	failed string            // the last failure logged, so it is logged once
}

// start loads the files for the first time.
func (r *reloader[T]) start() error {
	if r.interval == 0 {
		r.interval = DefaultCheckInterval
	}
	if r.now == nil {
		r.now = time.Now
	}
	if r.log == nil {
		r.log = slog.New(slog.DiscardHandler)
	}
	stats, data, err := readFiles(r.files)
	if err != nil {
		return err
	}
	v, err := r.load(data)
	if err != nil {
		return err
	}
	r.store(v, stats, hashContents(data))
	r.nextCheck.Store(r.now().Add(r.interval).UnixNano())
	return nil
}

// current returns the configuration to use now, checking the files first
// when the interval has elapsed and no other goroutine is checking them.
func (r *reloader[T]) current() *T {
	if r.now().UnixNano() >= r.nextCheck.Load() && r.mu.TryLock() {
		if r.now().UnixNano() >= r.nextCheck.Load() {
			r.check()
			r.nextCheck.Store(r.now().Add(r.interval).UnixNano())
		}
		r.mu.Unlock()
	}
	return r.cur.Load()
}

// check reloads the files if they have changed and load. r.mu is held.
func (r *reloader[T]) check() {
	if r.stats != nil && r.unchanged() {
		return
	}
	stats, data, err := readFiles(r.files)
	if err != nil {
		r.fail(err.Error(), err)
		return
	}
	sum := hashContents(data)
	if sum == r.sum {
		if r.failed != "" {
			r.log.Info("tls: "+r.what+" files are back to the loaded contents", slog.Any("files", r.files))
			r.failed = ""
		}
		r.keepStats(stats)
		return
	}
	v, err := r.load(data)
	if err != nil {
		r.fail(hex.EncodeToString(sum[:]), err)
		return
	}
	r.store(v, stats, sum)
}

// unchanged reports whether every file has the stats of the loaded ones.
func (r *reloader[T]) unchanged() bool {
	for i, f := range r.files {
		fi, err := os.Stat(f)
		if err != nil {
			return false
		}
		old := r.stats[i]
		if fi.Size() != old.Size() || !fi.ModTime().Equal(old.ModTime()) || !os.SameFile(fi, old) {
			return false
		}
	}
	return true
}

func (r *reloader[T]) store(v *T, stats []os.FileInfo, sum [sha256.Size]byte) {
	r.cur.Store(v)
	r.sum = sum
	r.failed = ""
	r.keepStats(stats)
	r.loaded(v, r.log.With(slog.Any("files", r.files)))
}

// keepStats records the stats of the loaded files, unless one was modified
// so recently that its stats may not show a further change.
func (r *reloader[T]) keepStats(stats []os.FileInfo) {
	r.stats = stats
	for _, fi := range stats {
		if time.Since(fi.ModTime()) < racyWindow {
			r.stats = nil
		}
	}
}

// fail logs err once per distinct failure key and makes the next check read
// the files again, whatever their stats.
func (r *reloader[T]) fail(key string, err error) {
	r.stats = nil
	if key == r.failed {
		return
	}
	r.failed = key
	r.log.Error("tls: "+r.what+" reload failed; still serving the previous one", slog.Any("files", r.files), slog.String("error", err.Error()))
}

// readFiles stats and reads files. Errors name the file, never its
// contents.
func readFiles(files []string) ([]os.FileInfo, [][]byte, error) {
	stats := make([]os.FileInfo, len(files))
	data := make([][]byte, len(files))
	for i, f := range files {
		fi, err := os.Stat(f)
		if err != nil {
			return nil, nil, fmt.Errorf("tlsconf: %w", err)
		}
		b, err := readFile(f)
		if err != nil {
			return nil, nil, fmt.Errorf("tlsconf: %w", err)
		}
		stats[i], data[i] = fi, b
	}
	return stats, data, nil
}

// maxFileSize bounds what is read of one file: a large CA bundle is a few
// hundred kilobytes, so more means a wrong path (a device, a log).
const maxFileSize = 4 << 20

func readFile(name string) ([]byte, error) {
	f, err := os.Open(name)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxFileSize+1))
	if err != nil {
		return nil, err
	}
	if len(b) > maxFileSize {
		return nil, fmt.Errorf("%s: larger than %d bytes", name, maxFileSize)
	}
	return b, nil
}

// hashContents hashes the files' contents, each prefixed by its length so
// that moving bytes from one file to the next changes the hash.
func hashContents(data [][]byte) [sha256.Size]byte {
	h := sha256.New()
	for _, d := range data {
		h.Write(binary.BigEndian.AppendUint64(nil, uint64(len(d))))
		h.Write(d)
	}
	var sum [sha256.Size]byte
	h.Sum(sum[:0])
	return sum
}
