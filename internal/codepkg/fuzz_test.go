package codepkg

import (
	"archive/zip"
	"bytes"
	"io"
	"testing"
)

func seedZip(files map[string]string) []byte {
	var buf bytes.Buffer
	zw := zip.NewWriter(&buf)
	for name, data := range files {
		w, _ := zw.Create(name)
		io.WriteString(w, data)
	}
	zw.Close()
	return buf.Bytes()
}

type countingWriter struct{ n int64 }

func (c *countingWriter) Write(p []byte) (int, error) { c.n += int64(len(p)); return len(p), nil }

// A code package is anything a user uploads: checking it and turning it
// into the tar a container gets must end with a result or an error on any
// bytes, and a package that passed the check must not unpack to more than
// the limits allow.
func FuzzCheckAndTar(f *testing.F) {
	f.Add(seedZip(map[string]string{"run.sh": "echo hi\n", "lib/a.py": "x = 1\n"}))
	f.Add(seedZip(map[string]string{"../escape": "x"}))
	f.Add(seedZip(map[string]string{"/abs": "x", "a/../../b": "y"}))
	f.Add(seedZip(map[string]string{"big": string(bytes.Repeat([]byte("a"), 100000))}))
	f.Add([]byte("PK\x05\x06" + string(make([]byte, 18))))
	f.Add([]byte{})
	lim := Limits{MaxFiles: 50, MaxUnpackedBytes: 1 << 20}
	f.Fuzz(func(t *testing.T, b []byte) {
		r := bytes.NewReader(b)
		if _, err := Check(r, int64(len(b)), lim); err != nil {
			return
		}
		var out countingWriter
		tw := NewTarWriter(&out, TarOptions{Dir: "/mnt/task", UID: 65534, GID: 65534, Limits: lim})
		if err := tw.Zip(r, int64(len(b))); err != nil {
			return
		}
		tw.Close()
		// Each entry costs a header of 512 bytes and padding to 512.
		if max := lim.MaxUnpackedBytes + int64(lim.MaxFiles+64)*1536 + 2048; out.n > max {
			t.Fatalf("a checked package unpacked to %d bytes of tar, over %d", out.n, max)
		}
	})
}
