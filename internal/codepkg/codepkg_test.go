package codepkg

import (
	"archive/tar"
	"archive/zip"
	"bufio"
	"bytes"
	"compress/flate"
	"encoding/binary"
	"errors"
	"fmt"
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

// writeDirectoryBomb writes a zip of one stored entry followed by records
// central directory records that all point at it. count and dirSize are
// what the end record declares (-1: the true values); zip64 declares them
// in a zip64 end record instead.
func writeDirectoryBomb(w io.Writer, records int, count, dirSize int64, zip64 bool) error {
	le := binary.LittleEndian
	local := make([]byte, 30, 31)
	le.PutUint32(local[0:], 0x04034b50)
	le.PutUint16(local[4:], 20)
	le.PutUint16(local[26:], 1)
	local = append(local, 'a')
	if _, err := w.Write(local); err != nil {
		return err
	}
	rec := make([]byte, 46, 47)
	le.PutUint32(rec[0:], 0x02014b50)
	le.PutUint16(rec[4:], 20)
	le.PutUint16(rec[6:], 20)
	le.PutUint16(rec[28:], 1)
	rec = append(rec, 'a')
	bw := bufio.NewWriterSize(w, 1<<20)
	for range records {
		if _, err := bw.Write(rec); err != nil {
			return err
		}
	}
	if count < 0 {
		count = int64(records)
	}
	if dirSize < 0 {
		dirSize = int64(records) * int64(len(rec))
	}
	dirOffset := int64(len(local))
	end := make([]byte, 22)
	le.PutUint32(end[0:], 0x06054b50)
	if zip64 {
		z := make([]byte, 56)
		le.PutUint32(z[0:], 0x06064b50)
		le.PutUint64(z[4:], 44)
		le.PutUint64(z[24:], uint64(count))
		le.PutUint64(z[32:], uint64(count))
		le.PutUint64(z[40:], uint64(dirSize))
		le.PutUint64(z[48:], uint64(dirOffset))
		loc := make([]byte, 20)
		le.PutUint32(loc[0:], 0x07064b50)
		le.PutUint64(loc[8:], uint64(dirOffset+int64(records)*int64(len(rec))))
		le.PutUint32(loc[16:], 1)
		bw.Write(z)
		bw.Write(loc)
		le.PutUint16(end[8:], 0xffff)
		le.PutUint16(end[10:], 0xffff)
		le.PutUint32(end[12:], 0xffffffff)
		le.PutUint32(end[16:], 0xffffffff)
	} else {
		le.PutUint16(end[8:], uint16(count))
		le.PutUint16(end[10:], uint16(count))
		le.PutUint32(end[12:], uint32(dirSize))
		le.PutUint32(end[16:], uint32(dirOffset))
	}
	if _, err := bw.Write(end); err != nil {
		return err
	}
	return bw.Flush()
}

func TestPreflightRefusesDirectoryBombs(t *testing.T) {
	t.Parallel()
	lim := DefaultLimits
	cases := []struct {
		name    string
		records int
		count   int64
		dirSize int64
		zip64   bool
		want    string
	}{
		{"declared in zip64", 200_000, -1, -1, true, "declares 200000 entries"},
		// 70000 records, declared as 70000 mod 65536 = 4464, which
		// archive/zip accepts.
		{"count hidden in 16 bits", 70_000, -1, -1, false, "holds more than 10000 entries"},
		// 65537 = 1 mod 65536: one entry declared, 3 MB of directory.
		{"one entry declared", 65_537, -1, -1, false, "out of proportion"},
		// The directory claims 47 bytes and runs on for 3 MB.
		{"directory size lies", 65_537, -1, 47, false, "runs past"},
	}
	for _, c := range cases {
		var buf bytes.Buffer
		if err := writeDirectoryBomb(&buf, c.records, c.count, c.dirSize, c.zip64); err != nil {
			t.Fatal(err)
		}
		z := buf.Bytes()
		// Proof that the zip is what archive/zip would parse in full.
		if zr, err := zip.NewReader(bytes.NewReader(z), int64(len(z))); err != nil || len(zr.File) != c.records {
			t.Fatalf("%s: archive/zip reads it as %v files, err %v", c.name, zr, err)
		}
		_, err := Preflight(bytes.NewReader(z), int64(len(z)), lim)
		if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: Preflight = %v, want %q", c.name, err, c.want)
		}
		if _, err := Check(bytes.NewReader(z), int64(len(z)), lim); !errors.Is(err, ErrInvalid) {
			t.Errorf("%s: Check = %v", c.name, err)
		}
		tw := NewTarWriter(io.Discard, TarOptions{Dir: "/mnt/task", Limits: lim})
		if err := tw.Zip(bytes.NewReader(z), int64(len(z))); !errors.Is(err, ErrInvalid) {
			t.Errorf("%s: Zip = %v", c.name, err)
		}
	}
}

func TestPreflightAcceptsRealZips(t *testing.T) {
	t.Parallel()
	// 70000 entries need the zip64 end record.
	var buf bytes.Buffer
	zw := zip.NewWriter(&buf)
	for i := range 70_000 {
		if _, err := zw.CreateHeader(&zip.FileHeader{Name: fmt.Sprintf("dir/file-%05d.txt", i), Method: zip.Store}); err != nil {
			t.Fatal(err)
		}
	}
	zw.SetComment(strings.Repeat("c", 60_000))
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	z := buf.Bytes()
	d, err := Preflight(bytes.NewReader(z), int64(len(z)), Limits{MaxFiles: 70_000})
	if err != nil {
		t.Fatal(err)
	}
	if d.Records != 70_000 {
		t.Fatalf("directory = %+v", d)
	}
	if _, err := Preflight(bytes.NewReader(z), int64(len(z)), Limits{MaxFiles: 69_999}); !errors.Is(err, ErrInvalid) {
		t.Fatalf("one over the limit: %v", err)
	}
	// Data before the zip (a self-extracting stub) moves every offset.
	small := makeZip(t, entry{name: "a.sh", data: "true"}, entry{name: "b/c", data: "x"})
	prefixed := append([]byte(strings.Repeat("#!stub\n", 100)), small...)
	for _, z := range [][]byte{small, prefixed} {
		d, err := Preflight(bytes.NewReader(z), int64(len(z)), DefaultLimits)
		if err != nil || d.Records != 2 {
			t.Fatalf("Preflight = %+v, %v", d, err)
		}
		if _, err := Check(bytes.NewReader(z), int64(len(z)), DefaultLimits); err != nil {
			t.Fatal(err)
		}
	}
}
