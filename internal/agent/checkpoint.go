package agent

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/types"

	"github.com/kubelvs/kubelvs/pkg/lvs"
)

// CheckpointVersion is the version of the checkpoint format this agent writes and reads.
const CheckpointVersion = 1

// ErrCheckpoint is matched (errors.Is) by every error about a checkpoint file's content: not
// JSON, another version, a value that does not parse.
var ErrCheckpoint = errors.New("agent: unusable checkpoint")

// Checkpoint is what the agent must remember across restarts: which IPVS services it owns
// (for which VirtualService) and when each drain started. The programmed configuration is
// not in it: at start-up the agent reads that back from the kernel.
type Checkpoint struct {
	Node     string
	Services []CheckpointService
}

// CheckpointService is one owned service.
type CheckpointService struct {
	Key          lvs.ServiceKey
	Owner        types.NamespacedName
	Generation   int64
	Removing     bool
	DrainTimeout time.Duration
	Drains       []CheckpointDrain
}

// CheckpointDrain is one draining destination.
type CheckpointDrain struct {
	Destination lvs.DestinationKey
	Since       time.Time
	Timeout     time.Duration
}

// drains returns the drain records of each service, by canonical key.
func (cp *Checkpoint) drains() map[lvs.ServiceKey]map[lvs.DestinationKey]drainRecord {
	out := make(map[lvs.ServiceKey]map[lvs.DestinationKey]drainRecord, len(cp.Services))
	for i := range cp.Services {
		if len(cp.Services[i].Drains) == 0 {
			continue
		}
		m := make(map[lvs.DestinationKey]drainRecord, len(cp.Services[i].Drains))
		for _, d := range cp.Services[i].Drains {
			m[d.Destination] = drainRecord{Since: d.Since, Timeout: d.Timeout}
		}
		out[cp.Services[i].Key.Canonical()] = m
	}
	return out
}

// Checkpoint returns what the model must remember, in a stable order.
func (m *Model) Checkpoint(node string) *Checkpoint {
	cp := &Checkpoint{Node: node}
	for _, k := range m.Keys() {
		cp.Services = append(cp.Services, m.record(k))
	}
	return cp
}

// CheckpointChanges returns the records of the services whose record changed since
// CheckpointSaved, and the keys of those the agent no longer owns.
func (m *Model) CheckpointChanges() (set []CheckpointService, gone []lvs.ServiceKey) {
	for k := range m.dirty {
		if m.services[k] == nil {
			gone = append(gone, k)
		} else {
			set = append(set, m.record(k))
		}
	}
	return set, gone
}

func (m *Model) record(k lvs.ServiceKey) CheckpointService {
	o := m.services[k]
	cs := CheckpointService{Key: k, Owner: o.Owner, Generation: o.Generation, Removing: o.Removing, DrainTimeout: o.DrainTimeout}
	if m.draining[k] > 0 {
		for i := range o.Dests {
			if d := &o.Dests[i]; d.Draining() {
				cs.Drains = append(cs.Drains, CheckpointDrain{Destination: d.Key(), Since: d.DrainSince, Timeout: d.DrainTimeout})
			}
		}
	}
	return cs
}

// The file format: JSON with explicit, stable field names.
type fileCheckpoint struct {
	Version  int           `json:"version"`
	Node     string        `json:"node"`
	Services []fileService `json:"services"`
}

type fileService struct {
	Family       string      `json:"family"`
	Protocol     string      `json:"protocol,omitempty"`
	Address      string      `json:"address,omitempty"`
	Port         uint16      `json:"port,omitempty"`
	FirewallMark uint32      `json:"firewallMark,omitempty"`
	Owner        string      `json:"owner"`
	Generation   int64       `json:"generation"`
	Removing     bool        `json:"removing,omitempty"`
	DrainTimeout string      `json:"drainTimeout"`
	Drains       []fileDrain `json:"drains,omitempty"`
}

type fileDrain struct {
	Address string    `json:"address"`
	Port    uint16    `json:"port"`
	Since   time.Time `json:"since"`
	Timeout string    `json:"timeout"`
}

// MarshalCheckpoint encodes cp in the file format.
func MarshalCheckpoint(cp *Checkpoint) ([]byte, error) {
	f := fileCheckpoint{Version: CheckpointVersion, Node: cp.Node, Services: []fileService{}}
	for i := range cp.Services {
		f.Services = append(f.Services, toFile(&cp.Services[i]))
	}
	b, err := json.MarshalIndent(&f, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("agent: encode checkpoint: %w", err)
	}
	return append(b, '\n'), nil
}

func toFile(s *CheckpointService) fileService {
	fs := fileService{
		Family: s.Key.Family.String(), Protocol: s.Key.Protocol.String(), Port: s.Key.Port,
		FirewallMark: s.Key.FirewallMark, Owner: s.Owner.String(), Generation: s.Generation,
		Removing: s.Removing, DrainTimeout: s.DrainTimeout.String(),
	}
	if s.Key.Address.IsValid() {
		fs.Address = s.Key.Address.String()
	}
	for _, d := range s.Drains {
		fs.Drains = append(fs.Drains, fileDrain{Address: d.Destination.Address.String(), Port: d.Destination.Port,
			Since: d.Since.UTC(), Timeout: d.Timeout.String()})
	}
	return fs
}

// UnmarshalCheckpoint decodes the file format; every error matches ErrCheckpoint.
func UnmarshalCheckpoint(b []byte) (*Checkpoint, error) {
	var f fileCheckpoint
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&f); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrCheckpoint, err)
	}
	if f.Version != CheckpointVersion {
		return nil, fmt.Errorf("%w: version %d, this agent reads version %d", ErrCheckpoint, f.Version, CheckpointVersion)
	}
	cp := &Checkpoint{Node: f.Node}
	for i := range f.Services {
		s, err := f.Services[i].parse()
		if err != nil {
			return nil, fmt.Errorf("%w: service %d: %w", ErrCheckpoint, i, err)
		}
		cp.Services = append(cp.Services, s)
	}
	return cp, nil
}

func (fs *fileService) parse() (CheckpointService, error) {
	var s CheckpointService
	switch fs.Family {
	case "IPv4":
		s.Key.Family = lvs.IPv4
	case "IPv6":
		s.Key.Family = lvs.IPv6
	default:
		return s, fmt.Errorf("family %q", fs.Family)
	}
	s.Key.FirewallMark = fs.FirewallMark
	if fs.FirewallMark == 0 {
		p, err := lvs.ParseProtocol(fs.Protocol)
		if err != nil {
			return s, err
		}
		a, err := netip.ParseAddr(fs.Address)
		if err != nil {
			return s, err
		}
		s.Key.Protocol, s.Key.Address, s.Key.Port = p, a, fs.Port
		if lvs.FamilyOf(a) != s.Key.Family {
			return s, fmt.Errorf("address %s is not %s", a, s.Key.Family)
		}
	}
	ns, name, ok := strings.Cut(fs.Owner, "/")
	if !ok || ns == "" || name == "" {
		return s, fmt.Errorf("owner %q is not namespace/name", fs.Owner)
	}
	s.Owner = types.NamespacedName{Namespace: ns, Name: name}
	s.Generation, s.Removing = fs.Generation, fs.Removing
	var err error
	if s.DrainTimeout, err = time.ParseDuration(fs.DrainTimeout); err != nil {
		return s, err
	}
	for _, d := range fs.Drains {
		a, err := netip.ParseAddr(d.Address)
		if err != nil {
			return s, err
		}
		t, err := time.ParseDuration(d.Timeout)
		if err != nil {
			return s, err
		}
		s.Drains = append(s.Drains, CheckpointDrain{Destination: lvs.DestinationKey{Address: a, Port: d.Port}, Since: d.Since, Timeout: t})
	}
	return s, nil
}

// CheckpointFile reads and writes a checkpoint atomically: a complete new file is written
// beside the old one, synced, and renamed over it, and the directory is synced, so a crash
// leaves either the old or the new checkpoint. A write of what the file already holds is
// skipped.
type CheckpointFile struct {
	Path string
	last []byte
	// records holds each service's encoded record as last written by SaveChanges, so that a
	// write encodes only the services that changed.
	records map[lvs.ServiceKey][]byte
	// keys are the keys of records, sorted (kept in step, not sorted again at each write).
	keys []lvs.ServiceKey
}

// Size is the length of the checkpoint as last read or written.
func (f *CheckpointFile) Size() int { return len(f.last) }

// Load reads the checkpoint; a missing file is an empty checkpoint. An unusable file (error
// matching ErrCheckpoint) is moved aside to Path.corrupt-<unix time>, so the agent starts
// with no ownership claims (it then touches no existing service) and the file stays for
// inspection; the error says where it went.
func (f *CheckpointFile) Load(now time.Time) (*Checkpoint, error) {
	b, err := os.ReadFile(f.Path)
	if errors.Is(err, os.ErrNotExist) {
		return &Checkpoint{}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("agent: read checkpoint %s: %w", f.Path, err)
	}
	cp, err := UnmarshalCheckpoint(b)
	if err != nil {
		aside := fmt.Sprintf("%s.corrupt-%d", f.Path, now.Unix())
		if rerr := os.Rename(f.Path, aside); rerr != nil {
			return nil, fmt.Errorf("agent: checkpoint %s: %w (and moving it aside failed: %w)", f.Path, err, rerr)
		}
		return &Checkpoint{}, fmt.Errorf("agent: checkpoint %s moved to %s: %w", f.Path, aside, err)
	}
	f.last, f.records, f.keys = b, nil, nil
	return cp, nil
}

// Save writes cp whole unless the file already holds it; it reports whether it wrote.
func (f *CheckpointFile) Save(cp *Checkpoint) (bool, error) {
	f.records, f.keys = nil, nil
	return f.SaveChanges(cp.Node, cp.Services, nil)
}

// SaveChanges writes the checkpoint of node after changing the records of set and dropping
// those of gone, from what the last SaveChanges wrote (nothing after Load: the first call
// must set every record). Only the changed records are encoded; the file is written whole,
// one service per line, in the order MarshalCheckpoint uses. It reports whether it wrote.
func (f *CheckpointFile) SaveChanges(node string, set []CheckpointService, gone []lvs.ServiceKey) (bool, error) {
	// The records are changed in place: when the write fails they are still what the file
	// must hold, and the next call writes them (the caller sends its changes again).
	if f.records == nil {
		f.records = map[lvs.ServiceKey][]byte{}
	}
	records := f.records
	for _, k := range gone {
		k = k.Canonical()
		if _, ok := records[k]; ok {
			delete(records, k)
			if i, found := slices.BinarySearchFunc(f.keys, k, compareKeys); found {
				f.keys = slices.Delete(f.keys, i, i+1)
			}
		}
	}
	for i := range set {
		fs := toFile(&set[i])
		b, err := json.Marshal(&fs)
		if err != nil {
			return false, fmt.Errorf("agent: encode checkpoint service %s: %w", set[i].Key, err)
		}
		k := set[i].Key.Canonical()
		if _, ok := records[k]; !ok {
			j, _ := slices.BinarySearchFunc(f.keys, k, compareKeys)
			f.keys = slices.Insert(f.keys, j, k)
		}
		records[k] = b
	}
	keys := f.keys
	n, _ := json.Marshal(node)
	var buf bytes.Buffer
	fmt.Fprintf(&buf, `{"version":%d,"node":%s,"services":[`, CheckpointVersion, n)
	for i, k := range keys {
		if i > 0 {
			buf.WriteByte(',')
		}
		buf.WriteString("\n  ")
		buf.Write(records[k])
	}
	buf.WriteString("\n]}\n")
	b := buf.Bytes()
	if bytes.Equal(b, f.last) {
		return false, nil
	}
	if err := writeAtomic(f.Path, b); err != nil {
		return false, fmt.Errorf("agent: write checkpoint %s: %w", f.Path, err)
	}
	f.last = b
	return true, nil
}

func writeAtomic(path string, b []byte) error {
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	tmp, err := os.CreateTemp(dir, filepath.Base(path)+".tmp-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name()) // after a successful rename this finds nothing
	if _, err := tmp.Write(b); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return err
	}
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}
