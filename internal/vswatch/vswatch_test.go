package vswatch

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"testing"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	"k8s.io/apimachinery/pkg/runtime/serializer/streaming"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/rest"
	restclientwatch "k8s.io/client-go/rest/watch"
	"k8s.io/utils/ptr"

	"github.com/kubelvs/kubelvs/api/v1alpha1"
	"github.com/kubelvs/kubelvs/internal/testenv"
)

var scheme = testenv.Scheme()

// The real API server, started by the first test that needs one (not by TestMain: fuzzing
// runs TestMain in every worker).
var server struct {
	once sync.Once
	env  *testenv.Env
	err  error
}

func srv(t testing.TB) *testenv.Env {
	t.Helper()
	server.once.Do(func() { server.env, server.err = testenv.Start() })
	if server.err != nil {
		t.Fatal(server.err)
	}
	return server.env
}

func TestMain(m *testing.M) {
	code := m.Run()
	if server.env != nil {
		if err := server.env.Stop(); err != nil {
			fmt.Fprintln(os.Stderr, "stopping envtest:", err)
		}
	}
	os.Exit(code)
}

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

type watched struct {
	Type   watch.EventType
	Object runtime.Object
}

// decodeWatch decodes a watch response body as client-go's REST client does, negotiating
// the stream decoder from ns, until the body ends or an event does not decode.
func decodeWatch(ns runtime.NegotiatedSerializer, body []byte) ([]watched, error) {
	objDec, ss, framer, err := runtime.NewClientNegotiator(ns, v1alpha1.GroupVersion).StreamDecoder(runtime.ContentTypeJSON, nil)
	if err != nil {
		return nil, err
	}
	d := restclientwatch.NewDecoder(streaming.NewDecoder(framer.NewFrameReader(io.NopCloser(bytes.NewReader(body))), ss), objDec)
	var out []watched
	for {
		typ, obj, err := d.Decode()
		switch {
		case errors.Is(err, io.EOF):
			return out, nil
		case err != nil:
			return out, err
		}
		out = append(out, watched{typ, obj})
	}
}

// kept is what the agent keeps of events client-go decoded: VirtualServices without their
// managed fields and status.
func kept(evs []watched) []watched {
	for _, e := range evs {
		if vs, ok := e.Object.(*v1alpha1.VirtualService); ok {
			vs.ManagedFields = nil
			vs.Status = v1alpha1.VirtualServiceStatus{}
		}
	}
	return evs
}

// clientGo is client-go's own negotiated serializer for the scheme, as controller-runtime
// uses it for typed objects: what the agent's decoder is checked against.
func clientGo() runtime.NegotiatedSerializer {
	return serializer.WithoutConversionCodecFactory{CodecFactory: serializer.NewCodecFactory(scheme)}
}

// newNamespace creates a namespace and returns it with the VirtualServices' resource version
// a watch of what is made in it then starts from.
func newNamespace(t testing.TB, prefix string) (*corev1.Namespace, string) {
	t.Helper()
	c := srv(t).Client
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{GenerateName: prefix}}
	must(t, c.Create(t.Context(), ns))
	var list v1alpha1.VirtualServiceList
	must(t, c.List(t.Context(), &list))
	return ns, list.ResourceVersion
}

// captureWatch returns the raw body of a watch of ns's VirtualServices from resourceVersion
// rv, up to n events, as the API server sent it.
func captureWatch(t testing.TB, ns, rv string, n int) []byte {
	t.Helper()
	cfg := srv(t).Config
	rc, err := rest.UnversionedRESTClientFor(&rest.Config{Host: cfg.Host, TLSClientConfig: cfg.TLSClientConfig,
		BearerToken: cfg.BearerToken, ContentConfig: rest.ContentConfig{NegotiatedSerializer: clientGo()}})
	must(t, err)
	body, err := rc.Get().AbsPath("/apis", v1alpha1.GroupVersion.Group, v1alpha1.GroupVersion.Version, "namespaces", ns, "virtualservices").
		Param("watch", "true").Param("resourceVersion", rv).Stream(t.Context())
	must(t, err)
	defer body.Close()
	var out bytes.Buffer
	r := bufio.NewReader(body)
	for range n {
		line, err := r.ReadBytes('\n')
		must(t, err)
		out.Write(line)
	}
	return out.Bytes()
}

// The VirtualServices' watch decodes what the real API server sends exactly as client-go
// does, and every one of its events takes the short path.
func TestVirtualServiceWatchDecode(t *testing.T) {
	ctx := t.Context()
	c := srv(t).Client
	ns, rv := newNamespace(t, "vswatch-")
	full := &v1alpha1.VirtualService{ObjectMeta: metav1.ObjectMeta{Namespace: ns.Name, Name: "full",
		Labels: map[string]string{"app": "web"}, Annotations: map[string]string{"note": "a \"quoted\" \\ wéb value\n"}},
		Spec: v1alpha1.VirtualServiceSpec{
			Addresses: []string{"192.0.2.10", "2001:db8::10"},
			Ports: []v1alpha1.VirtualServicePort{{Name: "http", Port: 80, Protocol: v1alpha1.ProtocolTCP},
				{Name: "dns", Port: 53, Protocol: v1alpha1.ProtocolUDP}},
			BackendRefs: []v1alpha1.BackendRef{{Name: "web", Weight: ptr.To[int32](3)},
				{Kind: v1alpha1.BackendKindBackendPool, Name: "pool"}},
		}}
	must(t, c.Create(ctx, full))
	small := &v1alpha1.VirtualService{ObjectMeta: metav1.ObjectMeta{Namespace: ns.Name, Name: "small"}, Spec: v1alpha1.VirtualServiceSpec{
		Addresses: []string{"192.0.2.11"}, Ports: []v1alpha1.VirtualServicePort{{Port: 443, Protocol: v1alpha1.ProtocolTCP}},
		BackendRefs: []v1alpha1.BackendRef{{Name: "web"}}}}
	must(t, c.Create(ctx, small))
	full.Spec.Ports[0].Port = 8080
	must(t, c.Update(ctx, full))
	full.Status = v1alpha1.VirtualServiceStatus{ObservedGeneration: full.Generation, Conditions: []metav1.Condition{{
		Type: "Programmed", Status: metav1.ConditionTrue, Reason: "Programmed", Message: "1/1 nodes", LastTransitionTime: metav1.Now(), ObservedGeneration: full.Generation}}}
	must(t, c.Status().Update(ctx, full))
	must(t, c.Delete(ctx, small))
	body := captureWatch(t, ns.Name, rv, 5) // ADDED, ADDED, MODIFIED (spec), MODIFIED (status), DELETED

	want, err := decodeWatch(clientGo(), body)
	must(t, err)
	if vs, ok := want[3].Object.(*v1alpha1.VirtualService); !ok || len(vs.ManagedFields) == 0 || len(vs.Status.Conditions) == 0 {
		t.Fatalf("the status update's VirtualService has no managed fields or no status conditions to skip: %+v", want[3].Object)
	}
	want = kept(want)
	var counts Counts
	got, err := decodeWatch(NewSerializers(scheme, &counts), body)
	must(t, err)
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("decoded events (-client-go +agent):\n%s", diff)
	}
	var types []watch.EventType
	for _, e := range got {
		types = append(types, e.Type)
	}
	if diff := cmp.Diff([]watch.EventType{watch.Added, watch.Added, watch.Modified, watch.Modified, watch.Deleted}, types); diff != "" {
		t.Errorf("event types (-want +got):\n%s", diff)
	}
	if f, o, s := counts.FastEvents.Load(), counts.FastObjects.Load(), counts.Slow.Load(); f != 5 || o != 5 || s != 0 {
		t.Errorf("short path took %d events and %d objects, client-go's %d decodes; want 5, 5, 0", f, o, s)
	}
}

// Events not in the server's shape, or not VirtualServices, decode as client-go decodes them
// (by client-go's decoder).
func TestVirtualServiceWatchDecodeFrames(t *testing.T) {
	const gv = `"apiVersion":"kubelvs.io/v1alpha1"`
	vs := `{` + gv + `,"kind":"VirtualService","metadata":{"name":"a","namespace":"n","resourceVersion":"5"},"spec":{"addresses":["192.0.2.1"]}}`
	for _, tc := range []struct {
		name       string
		body       string
		fast, slow int64 // envelopes and objects through each path (an envelope's object is decoded on its own)
		wantErr    bool
	}{
		{name: "server shape", body: `{"type":"ADDED","object":` + vs + "}\n", fast: 2},
		{name: "managed fields and status", body: `{"type":"MODIFIED","object":{` + gv + `,"kind":"VirtualService","metadata":{"name":"a","managedFields":[{"manager":"m","operation":"Update","fieldsType":"FieldsV1","fieldsV1":{"f:spec":{}}}]},"spec":{"addresses":["192.0.2.1"]},"status":{"observedGeneration":2,"conditions":[{"type":"Programmed","status":"True"}]}}}`, fast: 2},
		{name: "kind first", body: `{"type":"MODIFIED","object":{"kind":"VirtualService",` + gv + `,"metadata":{"name":"a"}}}`, fast: 2},
		{name: "spaces", body: `{ "type": "ADDED", "object": ` + vs + ` }`, fast: 1, slow: 1},
		{name: "key after the object", body: `{"type":"ADDED","object":` + vs + `,"extra":1}`, fast: 1, slow: 1},
		{name: "object first", body: `{"object":` + vs + `,"type":"DELETED"}`, fast: 1, slow: 1},
		{name: "escaped type", body: `{"type":"ADD\u0045D","object":` + vs + `}`, fast: 1, slow: 1},
		{name: "error status", body: `{"type":"ERROR","object":{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure","message":"too old resource version: 1 (5)","reason":"Expired","code":410}}`,
			fast: 1, slow: 1},
		{name: "bookmark", body: `{"type":"BOOKMARK","object":{` + gv + `,"kind":"VirtualService","metadata":{"resourceVersion":"9","annotations":{"k8s.io/initial-events-end":"true"}}}}`, fast: 2},
		{name: "kind overridden later", body: `{"type":"ADDED","object":{` + gv + `,"kind":"VirtualService","metadata":{"name":"a"},"kind":"Status"}}`, fast: 1, slow: 1},
		{name: "spec not an object", body: `{"type":"ADDED","object":{` + gv + `,"kind":"VirtualService","spec":[1]}}`, fast: 1, slow: 1, wantErr: true},
		{name: "unknown type", body: `{"type":"RENAMED","object":` + vs + `}`, fast: 1, wantErr: true},
		{name: "no object", body: `{"type":"ADDED"}`, slow: 2, wantErr: true},
		{name: "not json", body: `{"type":"ADDED","object":{`, wantErr: true},
		{name: "two events", body: `{"type":"ADDED","object":` + vs + "}\n" + `{"type":"DELETED","object":` + vs + "}\n", fast: 4},
		// Framing: client-go's framer takes over from a line that is not one value by itself.
		{name: "no newline at the end", body: `{"type":"ADDED","object":` + vs + `}`, fast: 2},
		{name: "blank lines and CRLF", body: "\r\n\n" + `{"type":"ADDED","object":` + vs + "}\r\n\n" + `{"type":"DELETED","object":` + vs + "}\r\n", fast: 4},
		{name: "pretty printed", body: "{\n  \"type\": \"ADDED\",\n  \"object\": " + vs + "\n}\n", fast: 1, slow: 1},
		{name: "pretty after a line", body: `{"type":"ADDED","object":` + vs + "}\n{\n\"type\":\"DELETED\",\n\"object\":" + vs + "}\n" + `{"type":"MODIFIED","object":` + vs + "}\n",
			fast: 5, slow: 1},
		{name: "two events on a line", body: `{"type":"ADDED","object":` + vs + `}{"type":"DELETED","object":` + vs + "}\n", fast: 4},
		{name: "a line ending in a brace that is not an event", body: `{"type":"ADDED","object":{` + gv + `,"kind":"VirtualService","metadata":{}` + "\n" + `}}` + "\n", fast: 2},
		{name: "braces and quotes in strings", body: `{"type":"ADDED","object":{` + gv + `,"kind":"VirtualService","metadata":{"name":"a","annotations":{"x":"}\"{[","y":"\\"}}}}`, fast: 2},
		{name: "a long event", body: `{"type":"ADDED","object":{` + gv + `,"kind":"VirtualService","metadata":{"name":"a","annotations":{"x":"` + strings.Repeat("0123456789", 20000) + `"}}}}` + "\n", fast: 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			want, wantErr := decodeWatch(clientGo(), []byte(tc.body))
			want = kept(want)
			var counts Counts
			got, err := decodeWatch(NewSerializers(scheme, &counts), []byte(tc.body))
			if (err != nil) != tc.wantErr || (wantErr != nil) != tc.wantErr {
				t.Fatalf("errors: agent %v, client-go %v; want an error: %v", err, wantErr, tc.wantErr)
			}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("decoded (-client-go +agent):\n%s", diff)
			}
			if f, s := counts.FastEvents.Load()+counts.FastObjects.Load(), counts.Slow.Load(); f != tc.fast || s != tc.slow {
				t.Errorf("short path %d, client-go's %d; want %d, %d", f, s, tc.fast, tc.slow)
			}
		})
	}
}

// Whatever a server sends, the agent's decoder does not panic, and whatever client-go decodes
// to a VirtualService the agent decodes to the same VirtualService.
func FuzzVirtualServiceWatchDecode(f *testing.F) {
	const gv = `"apiVersion":"kubelvs.io/v1alpha1"`
	for _, s := range []string{
		`{"type":"ADDED","object":{` + gv + `,"kind":"VirtualService","metadata":{"name":"a"},"spec":{"addresses":["192.0.2.1"],"ports":[{"port":80,"protocol":"TCP"}]}}}`,
		`{"type":"ERROR","object":{"kind":"Status","apiVersion":"v1","status":"Failure","code":410}}`,
		`{"type":"ADDED","object":{` + gv + `,"kind":"VirtualService"},"type":"DELETED"}`,
		`{"type":"ADDED","object":null}`,
		`{"type":"ADDED","object":{` + gv + `,"kind":"VirtualService","Kind":"Status"}}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		got, _ := decodeWatch(NewSerializers(scheme, nil), body)
		want, _ := decodeWatch(clientGo(), body)
		for i, w := range kept(want) {
			if _, ok := w.Object.(*v1alpha1.VirtualService); !ok {
				continue
			}
			if i >= len(got) {
				t.Fatalf("client-go decoded event %d, the agent did not", i)
			}
			if diff := cmp.Diff(w, got[i]); diff != "" {
				t.Fatalf("event %d (-client-go +agent):\n%s", i, diff)
			}
		}
	})
}

// A watch of VirtualServices in the server's shape, decoded by client-go's decoder and by the
// agent's: ns/op is per event.
func BenchmarkVirtualServiceWatchDecode(b *testing.B) {
	const n = 500
	ctx := b.Context()
	c := srv(b).Client
	ns, rv := newNamespace(b, "vswatch-bench-")
	for i := range n {
		must(b, c.Create(ctx, &v1alpha1.VirtualService{ObjectMeta: metav1.ObjectMeta{Namespace: ns.Name, Name: fmt.Sprintf("vs-%d", i)},
			Spec: v1alpha1.VirtualServiceSpec{Addresses: []string{fmt.Sprintf("198.18.%d.%d", i/250, 1+i%250)},
				Ports:       []v1alpha1.VirtualServicePort{{Port: 80, Protocol: v1alpha1.ProtocolTCP}},
				BackendRefs: []v1alpha1.BackendRef{{Name: fmt.Sprintf("svc-%d", i)}}}}))
	}
	body := captureWatch(b, ns.Name, rv, n)
	for _, tc := range []struct {
		name string
		ns   runtime.NegotiatedSerializer
	}{{"client-go", clientGo()}, {"agent", NewSerializers(scheme, nil)}} {
		b.Run(tc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				evs, err := decodeWatch(tc.ns, body)
				if err != nil || len(evs) != n {
					b.Fatalf("%d events, %v", len(evs), err)
				}
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*n), "ns/event")
		})
	}
}
