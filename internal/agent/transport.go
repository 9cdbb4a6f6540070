package agent

import (
	"bufio"
	"io"
	"net/http"
)

// responseReadSize is how much a response body is read at once by LargeReads; bodies of a
// known length up to smallBody are left as they are (a decoder reads them in one or two reads).
const (
	responseReadSize = 256 << 10
	smallBody        = 4 << 10
)

// LargeReads wraps the API client's transport so that every response body is read from the
// connection up to 256 KiB at a time, whatever the decoder asks for.
//
// Why: the HTTP/2 client returns flow-control credit to the API server (a WINDOW_UPDATE frame,
// a TLS record and a write) whenever 4 KiB or more have been read from a stream since the last
// one, and the watch decoders read a few KiB at a time: at 10,000 VirtualServices an agent's
// start sent tens of thousands of them (8 of the 93 s of CPU in the emulated VM's profile). One
// read takes whatever has arrived, so a larger read never waits for more data than a small
// one would: a watch event is delivered as soon as before. A body of known length gets a
// buffer no larger than itself, so the agent's small requests (Lease renewals, status
// answers) allocate no 256 KiB each.
func LargeReads(rt http.RoundTripper) http.RoundTripper { return largeReads{rt} }

type largeReads struct{ rt http.RoundTripper }

func (l largeReads) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := l.rt.RoundTrip(req)
	if err != nil || resp.Body == nil || resp.Body == http.NoBody {
		return resp, err
	}
	size := responseReadSize
	if n := resp.ContentLength; n >= 0 { // -1: unknown, as for a watch
		if n <= smallBody {
			return resp, nil
		}
		size = int(min(n, responseReadSize))
	}
	resp.Body = &bufferedBody{Reader: bufio.NewReaderSize(resp.Body, size), body: resp.Body}
	return resp, nil
}

// bufferedBody reads through its buffer and closes the body.
type bufferedBody struct {
	*bufio.Reader
	body io.ReadCloser
}

func (b *bufferedBody) Close() error { return b.body.Close() }
