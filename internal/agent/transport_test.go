package agent

import (
	"bytes"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// recordingBody is a response body that serves data at most avail bytes per Read (what has
// "arrived") and records the size of each buffer it is given.
type recordingBody struct {
	r      io.Reader
	avail  int
	asked  []int
	closed bool
}

func (b *recordingBody) Read(p []byte) (int, error) {
	b.asked = append(b.asked, len(p))
	return b.r.Read(p[:min(len(p), b.avail)])
}

func (b *recordingBody) Close() error { b.closed = true; return nil }

// bodyTransport answers with body, of length n (-1: unknown, as a watch's).
type bodyTransport struct {
	body *recordingBody
	n    int64
}

func (t bodyTransport) RoundTrip(*http.Request) (*http.Response, error) {
	return &http.Response{StatusCode: 200, Body: t.body, ContentLength: t.n}, nil
}

// A decoder reading 4 KiB at a time gets the same bytes, the connection is read 256 KiB at a
// time (one HTTP/2 flow-control update per read instead of one per 4 KiB), a read returns what
// has arrived without waiting for a full buffer, and Close reaches the body.
func TestLargeReads(t *testing.T) {
	data := bytes.Repeat([]byte("0123456789abcdef"), 64<<10) // 1 MiB
	body := &recordingBody{r: bytes.NewReader(data), avail: 300 << 10}
	req, _ := http.NewRequest(http.MethodGet, "https://apiserver/apis/kubelvs.io/v1alpha1/virtualservices?watch=true", nil)
	resp, err := LargeReads(bodyTransport{body, -1}).RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	var got bytes.Buffer
	buf := make([]byte, 4<<10)
	reads := 0
	for {
		n, err := resp.Body.Read(buf)
		got.Write(buf[:n])
		if n > 0 {
			reads++
		}
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	if !bytes.Equal(got.Bytes(), data) {
		t.Fatalf("read %d bytes, not the %d sent", got.Len(), len(data))
	}
	if reads != 256 {
		t.Errorf("the decoder's 4 KiB reads: %d, want 256", reads)
	}
	// 1 MiB in 256 KiB reads: 4, and one more that sees the end.
	if diff := cmp.Diff([]int{256 << 10, 256 << 10, 256 << 10, 256 << 10, 256 << 10}, body.asked); diff != "" {
		t.Errorf("reads of the connection's body, by buffer size (-want +got):\n%s", diff)
	}
	if err := resp.Body.Close(); err != nil || !body.closed {
		t.Errorf("Close: %v, body closed %v", err, body.closed)
	}

	// Only 1 KiB has arrived: the read returns it, it does not wait for more.
	slow := &recordingBody{r: strings.NewReader(strings.Repeat("x", 10<<10)), avail: 1 << 10}
	resp, err = LargeReads(bodyTransport{slow, -1}).RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	if n, err := resp.Body.Read(buf); n != 1<<10 || err != nil || len(slow.asked) != 1 {
		t.Errorf("first read: %d bytes, %v, after %d reads of the body; want 1024, nil, 1", n, err, len(slow.asked))
	}

	// Bodies of a known length: a small one is read as the decoder reads it, a larger one
	// through a buffer of its own size (no 256 KiB for a 100 KiB answer).
	for _, tt := range []struct {
		n         int
		wantFirst int
	}{{2 << 10, 4 << 10}, {100 << 10, 100 << 10}} {
		b := &recordingBody{r: strings.NewReader(strings.Repeat("y", tt.n)), avail: tt.n}
		resp, err := LargeReads(bodyTransport{b, int64(tt.n)}).RoundTrip(req)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := resp.Body.Read(buf); err != nil || len(b.asked) == 0 || b.asked[0] != tt.wantFirst {
			t.Errorf("a body of %d bytes: first read of the connection's body with %v (%v), want a %d-byte buffer", tt.n, b.asked, err, tt.wantFirst)
		}
	}
}
