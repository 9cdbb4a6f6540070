package demo

import (
	"bytes"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
)

func TestWriteTables(t *testing.T) {
	vs := &metav1.Table{
		ColumnDefinitions: []metav1.TableColumnDefinition{{Name: "Name"}, {Name: "Addresses"}, {Name: "Ready"}, {Name: "Nodes"}, {Name: "Hidden", Priority: 1}, {Name: "Age"}},
		Rows: []metav1.TableRow{
			{Cells: []any{"web", []any{"192.0.2.10"}, "True", "2/2", "x", "5s"}, Object: runtime.RawExtension{Raw: []byte(`{"kind":"PartialObjectMetadata","metadata":{"name":"web","namespace":"default"}}`)}},
			{Cells: []any{"dns", nil, "", "1/2", "x", "7s"}, Object: runtime.RawExtension{Raw: []byte(`{"metadata":{"name":"dns","namespace":"default"}}`)}},
		},
	}
	nodes := &metav1.Table{
		ColumnDefinitions: []metav1.TableColumnDefinition{{Name: "Name"}, {Name: "Services"}, {Name: "Kernel", Priority: 1}},
		Rows:              []metav1.TableRow{{Cells: []any{"n1", float64(5), "6.12"}, Object: runtime.RawExtension{Raw: []byte(`{"metadata":{"name":"n1"}}`)}}},
	}
	var b bytes.Buffer
	if err := writeTables(&b, []kindTable{{Prefix: "virtualservice.kubelvs.io/", Table: vs}, {Prefix: "ipvsnode.kubelvs.io/", Table: nodes}}); err != nil {
		t.Fatal(err)
	}
	want := strings.Join([]string{
		"NAMESPACE   NAME                            ADDRESSES    READY    NODES   AGE",
		"default     virtualservice.kubelvs.io/web   192.0.2.10   True     2/2     5s",
		"default     virtualservice.kubelvs.io/dns   <none>       <none>   1/2     7s",
		"",
		"NAMESPACE   NAME                     SERVICES",
		"            ipvsnode.kubelvs.io/n1   5",
		"",
	}, "\n")
	if diff := cmp.Diff(want, b.String()); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
}

func TestWriteSpread(t *testing.T) {
	var b bytes.Buffer
	writeSpread(&b, []Share{{Backend: "a", Weight: 1, Requests: 250}, {Backend: "bb", Weight: 3, Requests: 750}, {Backend: "c", Weight: 0, Requests: 0}})
	want := strings.Join([]string{
		"BACKEND  WEIGHT  EXPECTED  GOT          ",
		"a        1        25.0%     250  25.0%  " + strings.Repeat("█", 13),
		"bb       3        75.0%     750  75.0%  " + strings.Repeat("█", 40),
		"c        0         0.0%       0   0.0%  ",
		"",
	}, "\n")
	if diff := cmp.Diff(want, b.String()); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
}

func TestMetricLines(t *testing.T) {
	in := `# HELP kubelvs_ipvs_real_server_connections_total x
# TYPE kubelvs_ipvs_real_server_connections_total counter
kubelvs_ipvs_real_server_connections_total{name="web",namespace="default",real_server="10.244.1.2:8080"} 251
kubelvs_ipvs_real_server_connections_total{name="web",namespace="default",real_server="10.244.3.2:8080"} 500
kubelvs_ipvs_real_server_connections_total{name="marked",namespace="default",real_server="10.244.1.2:0"} 0
kubelvs_ipvs_real_server_connections_total_extra{name="web"} 9
kubelvs_ipvs_real_server_connections_total{name="web",real_server="broken} 3
kubelvs_agent_netlink_requests_total{kind="write"} 12
`
	got := metricLines(strings.NewReader(in), []string{"kubelvs_ipvs_real_server_connections_total"}, `name="web"`)
	want := []string{
		`kubelvs_ipvs_real_server_connections_total{name="web",namespace="default",real_server="10.244.1.2:8080"} 251`,
		`kubelvs_ipvs_real_server_connections_total{name="web",namespace="default",real_server="10.244.3.2:8080"} 500`,
		`kubelvs_ipvs_real_server_connections_total{name="web",real_server="broken} 3`,
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("metricLines (-want +got):\n%s", diff)
	}
	conns := realServerConnections(got)
	if diff := cmp.Diff(map[string]float64{"10.244.1.2:8080": 251, "10.244.3.2:8080": 500}, conns); diff != "" {
		t.Errorf("realServerConnections (-want +got):\n%s", diff)
	}
	if got := metricLines(strings.NewReader(in), []string{"kubelvs_agent_netlink_requests_total"}); len(got) != 1 {
		t.Errorf("no filter: %v", got)
	}
}

func TestReadObjects(t *testing.T) {
	objs, err := readObjects("testdata/samples/external-pool.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, o := range objs {
		got = append(got, o.GetKind()+"/"+o.GetName())
	}
	if diff := cmp.Diff([]string{"BackendPool/legacy", "VirtualService/legacy"}, got); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
}
