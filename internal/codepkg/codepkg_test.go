package codepkg

import (
	"archive/tar"
	"archive/zip"
	"bytes"
	"compress/flate"
	"errors"
	"hash/crc32"
	"io"
	"io/fs"
	"strings"
	"testing"
)

type entry struct {
	name string
	data string
	mode fs.FileMode
}

func makeZip(t *testing.T, entries ...entry) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw := zip.NewWriter(&buf)
	for _, e := range entries {
		h := &zip.FileHeader{Name: e.name, Method: zip.Deflate}
		if e.mode != 0 {
			h.SetMode(e.mode)
		}
		w, err := zw.CreateHeader(h)
		if err != nil {
			t.Fatal(err)
		}
		io.WriteString(w, e.data)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func TestCheckAcceptsNormalPackage(t *testing.T) {
	t.Parallel()
	z := makeZip(t, entry{name: "__runner__.sh", data: "echo hi\n", mode: 0o755}, entry{name: "lib/", mode: fs.ModeDir | 0o755}, entry{name: "lib/a.txt", data: "a"})
	info, err := Check(bytes.NewReader(z), int64(len(z)), DefaultLimits)
	if err != nil {
		t.Fatal(err)
	}
	if !info.HasRunner || info.Files != 3 || info.UnpackedBytes != 9 {
		t.Fatalf("info = %+v", info)
	}
}

func TestCheckRefusesHostileZips(t *testing.T) {
	t.Parallel()
	cases := map[string][]byte{
		"dotdot":       makeZip(t, entry{name: "../../etc/passwd", data: "x"}),
		"inner dotdot": makeZip(t, entry{name: "a/../../b", data: "x"}),
		"absolute":     makeZip(t, entry{name: "/etc/cron.d/evil", data: "x"}),
		"backslash":    makeZip(t, entry{name: "..\\..\\evil", data: "x"}),
		"drive":        makeZip(t, entry{name: "C:/evil", data: "x"}),
		"symlink":      makeZip(t, entry{name: "link", data: "/etc/shadow", mode: fs.ModeSymlink | 0o777}),
		"not a zip":    []byte("this is not a zip file at all"),
		"too many":     makeZip(t, entry{name: "a", data: "1"}, entry{name: "b", data: "2"}, entry{name: "c", data: "3"}),
		"too big":      makeZip(t, entry{name: "big", data: strings.Repeat("0", 4096)}),
	}
	lim := Limits{MaxFiles: 2, MaxUnpackedBytes: 1024}
	for name, z := range cases {
		_, err := Check(bytes.NewReader(z), int64(len(z)), lim)
		if !errors.Is(err, ErrInvalid) {
			t.Errorf("%s: Check = %v, want ErrInvalid", name, err)
		}
	}
}

// lyingZip declares a small uncompressed size for an entry that inflates to
// much more: the shape of a zip bomb that fools a check of headers alone.
func lyingZip(t *testing.T, real int, declared uint64) []byte {
	t.Helper()
	data := bytes.Repeat([]byte{0}, real)
	var comp bytes.Buffer
	fw, _ := flate.NewWriter(&comp, flate.BestCompression)
	fw.Write(data)
	fw.Close()
	var buf bytes.Buffer
	zw := zip.NewWriter(&buf)
	w, err := zw.CreateRaw(&zip.FileHeader{Name: "bomb", Method: zip.Deflate, CRC32: crc32.ChecksumIEEE(data),
		CompressedSize64: uint64(comp.Len()), UncompressedSize64: declared})
	if err != nil {
		t.Fatal(err)
	}
	w.Write(comp.Bytes())
	zw.Close()
	return buf.Bytes()
}

func TestTarStopsLyingBomb(t *testing.T) {
	t.Parallel()
	z := lyingZip(t, 10<<20, 100)
	if _, err := Check(bytes.NewReader(z), int64(len(z)), DefaultLimits); err != nil {
		t.Fatalf("Check sees only headers and should pass this one: %v", err)
	}
	tw := NewTarWriter(io.Discard, TarOptions{Dir: "/mnt/task", Limits: DefaultLimits})
	err := tw.Zip(bytes.NewReader(z), int64(len(z)))
	if !errors.Is(err, ErrInvalid) {
		t.Fatalf("Zip of a lying entry = %v, want ErrInvalid", err)
	}
}

func TestTarLayout(t *testing.T) {
	t.Parallel()
	z := makeZip(t, entry{name: "run.sh", data: "echo hi\n", mode: 0o755}, entry{name: "sub/x.txt", data: "x"})
	var buf bytes.Buffer
	tw := NewTarWriter(&buf, TarOptions{Dir: "/mnt/task", UID: 65534, GID: 65534, Limits: DefaultLimits})
	if err := tw.Zip(bytes.NewReader(z), int64(len(z))); err != nil {
		t.Fatal(err)
	}
	if err := tw.File("/mnt/mayfly/payload.json", 0o644, []byte(`{}`)); err != nil {
		t.Fatal(err)
	}
	tw.Close()
	tr := tar.NewReader(&buf)
	got := map[string]*tar.Header{}
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		got[h.Name] = h
	}
	for _, want := range []string{"mnt/", "mnt/task/", "mnt/task/run.sh", "mnt/task/sub/", "mnt/task/sub/x.txt", "mnt/mayfly/payload.json"} {
		h, ok := got[want]
		if !ok {
			t.Errorf("missing %s in %v", want, got)
			continue
		}
		if h.Uid != 65534 || h.Gid != 65534 {
			t.Errorf("%s owned by %d:%d", want, h.Uid, h.Gid)
		}
	}
	if h := got["mnt/task/run.sh"]; h != nil && h.Mode&0o111 == 0 {
		t.Errorf("run.sh lost its exec bit: %o", h.Mode)
	}
}
