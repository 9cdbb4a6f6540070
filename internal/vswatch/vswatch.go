package vswatch

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"slices"
	"sync/atomic"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/rest"
	toolscache "k8s.io/client-go/tools/cache"
	kjson "sigs.k8s.io/json"

	"github.com/kubelvs/kubelvs/api/v1alpha1"
)

// vsGVK is what the watch's objects are.
var vsGVK = v1alpha1.GroupVersion.WithKind("VirtualService")

// vsObjectPrefixes are how the API server starts a VirtualService's JSON: a custom resource
// is encoded from a map (keys sorted), and a typed encoder writes kind first.
var vsObjectPrefixes = [][]byte{
	[]byte(`{"apiVersion":"` + v1alpha1.GroupVersion.String() + `","kind":"VirtualService",`),
	[]byte(`{"kind":"VirtualService","apiVersion":"` + v1alpha1.GroupVersion.String() + `",`),
}

var (
	eventPrefix = []byte(`{"type":"`)
	eventObject = []byte(`,"object":`)
)

// decoder is the JSON serializer with the short paths.
type decoder struct {
	runtime.Serializer
	counts *Counts
}

// Counts are the decodes each path took, so that a test can tell the short path is the one
// the server's events take.
type Counts struct {
	FastEvents, FastObjects atomic.Int64 // envelopes and objects on the short path
	Slow                    atomic.Int64 // client-go's decodes
}

func (d decoder) Decode(data []byte, defaults *schema.GroupVersionKind, into runtime.Object) (runtime.Object, *schema.GroupVersionKind, error) {
	switch t := into.(type) {
	case *metav1.WatchEvent:
		if cutEvent(data, t) {
			d.counts.FastEvents.Add(1)
			return t, nil, nil
		}
	case nil:
		if vs := decodeVirtualService(data); vs != nil {
			d.counts.FastObjects.Add(1)
			gvk := vsGVK
			return vs, &gvk, nil
		}
	}
	d.counts.Slow.Add(1)
	return d.Serializer.Decode(data, defaults, into)
}

// cutEvent fills ev from a watch event in the server's shape, {"type":"T","object":O}, and
// reports whether it was one. data is one valid JSON value (lineFramer's frames are), so O
// is one too when it ends where the event does: an event with more keys after the object is
// not cut short. O is left in data's buffer, not copied: the watch decodes it before it reads
// the next event.
func cutEvent(data []byte, ev *metav1.WatchEvent) bool {
	rest, ok := bytes.CutPrefix(data, eventPrefix)
	if !ok {
		return false
	}
	q := bytes.IndexByte(rest, '"')
	if q < 0 || bytes.IndexByte(rest[:q], '\\') >= 0 {
		return false
	}
	typ := rest[:q]
	obj, ok := bytes.CutPrefix(rest[q+1:], eventObject)
	if !ok {
		return false
	}
	obj = bytes.TrimRight(obj, " \t\r\n")
	if len(obj) == 0 || obj[len(obj)-1] != '}' {
		return false
	}
	obj = bytes.TrimRight(obj[:len(obj)-1], " \t\r\n")
	if len(obj) == 0 || obj[0] != '{' || valueEnd(obj) != len(obj) {
		return false
	}
	ev.Type = string(typ)
	ev.Object = runtime.RawExtension{Raw: obj}
	return true
}

// valueEnd returns the length of the object or array b starts with, b being valid JSON
// from there on (so brackets and string quotes are all it has to follow); -1 when it does not
// end in b.
func valueEnd(b []byte) int {
	depth := 0
	for i := 0; i < len(b); i++ {
		switch b[i] {
		case '"':
			for i++; i < len(b) && b[i] != '"'; i++ {
				if b[i] == '\\' {
					i++ // the escaped byte, a quote maybe
				}
			}
		case '{', '[':
			depth++
		case '}', ']':
			if depth--; depth == 0 {
				return i + 1
			}
		}
	}
	return -1
}

// decodeVirtualService decodes data as a VirtualService, without its managed fields and
// status, when it starts as the server writes one; nil when it does not or does not decode
// (client-go's decoder then has it).
func decodeVirtualService(data []byte) *v1alpha1.VirtualService {
	data = bytes.TrimLeft(data, " \t\r\n")
	if !slices.ContainsFunc(vsObjectPrefixes, func(p []byte) bool { return bytes.HasPrefix(data, p) }) {
		return nil
	}
	var w wireVirtualService
	// As client-go decodes: case-sensitive keys, unknown ones ignored.
	if err := kjson.UnmarshalCaseSensitivePreserveInts(data, &w); err != nil {
		return nil
	}
	if w.GroupVersionKind() != vsGVK {
		return nil // a later duplicate key changed it: let client-go say what it is
	}
	return &v1alpha1.VirtualService{TypeMeta: w.TypeMeta, ObjectMeta: w.Metadata.ObjectMeta, Spec: w.Spec}
}

// wireVirtualService is a VirtualService as the short path decodes it: without its managed
// fields and its status, which the agent's cache drops (TrimObject) and which are most of an
// object's bytes once a controller writes status (they are skipped, not decoded).
type wireVirtualService struct {
	metav1.TypeMeta `json:",inline"`
	Metadata        wireMeta                    `json:"metadata"`
	Spec            v1alpha1.VirtualServiceSpec `json:"spec"`
	Status          skipped                     `json:"status"`
}

type wireMeta struct {
	metav1.ObjectMeta
	ManagedFields skipped `json:"managedFields"` // shadows ObjectMeta's
}

// skipped is a value the decoder steps over.
type skipped struct{}

func (*skipped) UnmarshalJSON([]byte) error { return nil }

// serializers is the NegotiatedSerializer of the VirtualServices' client: client-go's, with
// decoder as its JSON serializer, for objects and for the watch's envelopes.
type serializers struct {
	runtime.NegotiatedSerializer
	infos []runtime.SerializerInfo
}

// NewSerializers is the VirtualServices' client's NegotiatedSerializer for scheme; counts,
// when not nil, counts the decodes.
func NewSerializers(scheme *runtime.Scheme, counts *Counts) runtime.NegotiatedSerializer {
	if counts == nil {
		counts = &Counts{}
	}
	base := serializer.WithoutConversionCodecFactory{CodecFactory: serializer.NewCodecFactory(scheme)}
	infos := slices.Clone(base.SupportedMediaTypes())
	for i := range infos {
		if infos[i].MediaType != runtime.ContentTypeJSON {
			continue
		}
		infos[i].Serializer = decoder{Serializer: infos[i].Serializer, counts: counts}
		if s := infos[i].StreamSerializer; s != nil {
			c := *s
			c.Serializer = decoder{Serializer: s.Serializer, counts: counts}
			c.Framer = lineFramer{Framer: s.Framer}
			infos[i].StreamSerializer = &c
		}
	}
	return serializers{NegotiatedSerializer: base, infos: infos}
}

func (s serializers) SupportedMediaTypes() []runtime.SerializerInfo { return s.infos }

// ListWatch lists and watches every VirtualService through a client whose JSON decoder is
// decoder, over httpClient (the manager's, so that one connection carries every watch as
// before); counts, when not nil, counts the decodes.
func ListWatch(cfg *rest.Config, httpClient *http.Client, scheme *runtime.Scheme, counts *Counts) (*toolscache.ListWatch, error) {
	c := rest.CopyConfig(cfg)
	gv := v1alpha1.GroupVersion
	c.GroupVersion = &gv
	c.APIPath = "/apis"
	c.ContentType = runtime.ContentTypeJSON
	c.NegotiatedSerializer = NewSerializers(scheme, counts)
	if c.UserAgent == "" {
		c.UserAgent = rest.DefaultKubernetesUserAgent()
	}
	rc, err := rest.RESTClientForConfigAndClient(c, httpClient)
	if err != nil {
		return nil, fmt.Errorf("vswatch: the VirtualServices' client: %w", err)
	}
	params := runtime.NewParameterCodec(scheme)
	return &toolscache.ListWatch{
		ListWithContextFunc: func(ctx context.Context, opts metav1.ListOptions) (runtime.Object, error) {
			l := &v1alpha1.VirtualServiceList{}
			if err := rc.Get().Resource("virtualservices").VersionedParams(&opts, params).Do(ctx).Into(l); err != nil {
				return nil, err
			}
			return l, nil
		},
		WatchFuncWithContext: func(ctx context.Context, opts metav1.ListOptions) (watch.Interface, error) {
			opts.Watch = true
			opts.AllowWatchBookmarks = true
			return rc.Get().Resource("virtualservices").VersionedParams(&opts, params).Watch(ctx)
		},
	}, nil
}
