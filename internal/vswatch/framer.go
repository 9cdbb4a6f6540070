package vswatch

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"io"

	"k8s.io/apimachinery/pkg/runtime"
)

// The API server writes a JSON watch one event per line (compact JSON, a newline after each:
// it pretty-prints only when asked). client-go's JSON framer finds each event's end with a
// JSON decoder, which scans the event twice and copies it; lineFramer finds the newline and
// validates the line once. A line that is not one JSON value by itself (a stream written
// otherwise) switches the stream to client-go's framer from that line on, so any stream is
// framed as client-go frames it. Every frame it returns is one valid JSON value, which
// cutEvent relies on.

// maxLine bounds a line the framer gathers (client-go's streaming decoder refuses frames over
// 16 MiB the same way).
const maxLine = 16 << 20

// errLineTooLong is a line longer than maxLine.
var errLineTooLong = errors.New("vswatch: a watch event longer than 16 MiB")

type lineFramer struct {
	runtime.Framer // client-go's JSON framer: writes, and a stream not written a line an event
}

func (f lineFramer) NewFrameReader(r io.ReadCloser) io.ReadCloser {
	return &lineReader{fallback: f.Framer, r: bufio.NewReaderSize(r, 64<<10), c: r}
}

type lineReader struct {
	fallback runtime.Framer
	r        *bufio.Reader
	c        io.Closer
	long     []byte        // a line longer than r's buffer, gathered
	rest     []byte        // what the caller's buffer did not take of the current frame
	compat   io.ReadCloser // client-go's framer, once a line was not a value by itself
}

func (l *lineReader) Close() error { return l.c.Close() }

// Read returns one frame, or the next part of one with io.ErrShortBuffer, as client-go's
// framers do.
func (l *lineReader) Read(p []byte) (int, error) {
	if len(l.rest) == 0 {
		if l.compat != nil {
			return l.compat.Read(p)
		}
		frame, err := l.next()
		if err != nil {
			return 0, err
		}
		if frame == nil {
			return l.compat.Read(p)
		}
		l.rest = frame
	}
	n := copy(p, l.rest)
	l.rest = l.rest[n:]
	if len(l.rest) > 0 {
		return n, io.ErrShortBuffer
	}
	return n, nil
}

// next returns the next line that holds a JSON value, or nil after switching to compat.
// The line stays in r's buffer (or long) until the next call.
func (l *lineReader) next() ([]byte, error) {
	for {
		line, err := l.line()
		if err != nil {
			return nil, err
		}
		v := bytes.TrimSpace(line)
		switch {
		case len(v) == 0:
			continue // a blank line: only whitespace between values
		case json.Valid(v):
			return v, nil
		}
		rest := append([]byte(nil), line...)
		l.compat = l.fallback.NewFrameReader(readCloser{io.MultiReader(bytes.NewReader(rest), l.r), l.c})
		return nil, nil
	}
}

// line reads up to and including the next newline (or to the end of the stream).
func (l *lineReader) line() ([]byte, error) {
	l.long = l.long[:0]
	for {
		b, err := l.r.ReadSlice('\n')
		switch {
		case errors.Is(err, bufio.ErrBufferFull):
			if len(l.long)+len(b) > maxLine {
				return nil, errLineTooLong
			}
			l.long = append(l.long, b...)
			continue
		case errors.Is(err, io.EOF) && len(b)+len(l.long) > 0:
			err = nil // the last line, without its newline
		case err != nil:
			return nil, err // as the body gave it: the watch tells an end (io.EOF) from a failure
		}
		if len(l.long) > 0 {
			l.long = append(l.long, b...)
			return l.long, err
		}
		return b, err
	}
}

type readCloser struct {
	io.Reader
	io.Closer
}
