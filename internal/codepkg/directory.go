package codepkg

import (
	"bufio"
	"encoding/binary"
	"io"
)

// archive/zip parses the whole central directory into memory before a
// caller sees the first entry, and it reads records until one does not
// parse, whatever count the end record declares (it compares only the low
// 16 bits). A 250 MB upload of millions of 47-byte records pointing at one
// entry thus costs over a gigabyte before any limit can be applied. The
// code here reads the end records and walks the directory's fixed-size
// headers itself, keeping nothing, so a zip is refused on what it declares
// and what its directory really holds before archive/zip allocates for it.

const (
	eocdSig        = 0x06054b50
	eocdLen        = 22
	eocd64LocSig   = 0x07064b50
	eocd64LocLen   = 20
	eocd64Sig      = 0x06064b50
	eocd64Len      = 56
	dirHeaderSig   = 0x02014b50
	dirHeaderLen   = 46
	maxCommentSpan = eocdLen + 0xffff
)

// DirBytesPerEntry is how much central directory one entry may take on
// average: the fixed 46 bytes, a long path and some extra fields. Real
// zips, node_modules included, need well under half of it.
const DirBytesPerEntry = 1 << 10

// dirSlack lets tiny packages carry a long archive comment or odd extras.
const dirSlack = 64 << 10

// FileOverhead is roughly what archive/zip keeps per entry beyond the
// bytes of its name, extra field and comment.
const FileOverhead = 256

// Directory is what a zip's central directory declares and holds.
type Directory struct {
	Records int64 // entries found by walking the directory
	Size    int64 // bytes the directory declares
}

// ParseCost is about how much memory archive/zip needs to parse the
// directory: each record is read into a buffer and copied into strings.
func (d Directory) ParseCost() int64 { return 2*d.Size + d.Records*FileOverhead }

// Preflight checks a zip's end of central directory record (and the zip64
// one), then walks the directory's record headers without keeping them.
// It refuses a zip that declares or holds more than lim.MaxFiles entries,
// or whose directory is larger than that many entries justify, so that
// what archive/zip will allocate is bounded before it is asked to.
func Preflight(r io.ReaderAt, size int64, lim Limits) (Directory, error) {
	end, err := readEnd(r, size)
	if err != nil {
		return Directory{}, err
	}
	maxFiles := int64(lim.MaxFiles)
	if maxFiles > 0 && end.records > uint64(maxFiles) {
		return Directory{}, invalid("declares %d entries, more than the limit of %d", end.records, maxFiles)
	}
	if end.size > uint64(size) || end.offset > uint64(size) {
		return Directory{}, invalid("central directory lies outside the file")
	}
	dir := Directory{Size: int64(end.size)}
	budget := dirSlack + int64(min(end.records, 1<<32))*DirBytesPerEntry
	if dir.Size > budget {
		return Directory{}, invalid("central directory of %d bytes is out of proportion to its %d entries", dir.Size, end.records)
	}
	// Walk from where archive/zip will start, the same way it does: until
	// the first record that is not a directory header. When the end record
	// implies data before the zip, archive/zip may start at either of two
	// places, so both are walked.
	starts := []int64{end.base + int64(end.offset)}
	if end.base != 0 {
		starts = append(starts, int64(end.offset))
	}
	for _, start := range starts {
		if start < 0 || start >= size {
			continue
		}
		n, walked, err := walk(r, start, size, maxFiles, budget, end.records)
		if err != nil {
			return Directory{}, err
		}
		dir.Records = max(dir.Records, n)
		dir.Size = max(dir.Size, walked)
	}
	return dir, nil
}

// walk counts the directory records from start, reading only their fixed
// headers, and stops with an error past maxFiles records or budget bytes.
func walk(r io.ReaderAt, start, size, maxFiles, budget int64, declared uint64) (records, walked int64, err error) {
	br := bufio.NewReaderSize(io.NewSectionReader(r, start, size-start), 32<<10)
	var hdr [dirHeaderLen]byte
	for {
		if _, err := io.ReadFull(br, hdr[:]); err != nil {
			return records, walked, nil
		}
		if binary.LittleEndian.Uint32(hdr[:]) != dirHeaderSig {
			return records, walked, nil
		}
		records++
		if maxFiles > 0 && records > maxFiles {
			return 0, 0, invalid("central directory holds more than %d entries", maxFiles)
		}
		vars := int64(binary.LittleEndian.Uint16(hdr[28:])) + int64(binary.LittleEndian.Uint16(hdr[30:])) +
			int64(binary.LittleEndian.Uint16(hdr[32:]))
		walked += dirHeaderLen + vars
		if walked > budget {
			return 0, 0, invalid("central directory runs past %d bytes, out of proportion to its %d declared entries", budget, declared)
		}
		if _, err := br.Discard(int(vars)); err != nil {
			return records, walked, nil
		}
	}
}

type dirEnd struct {
	records, size, offset uint64
	base                  int64 // where archive/zip will think the zip starts
}

// readEnd mirrors archive/zip's readDirectoryEnd, so that the directory
// walked here is the one archive/zip will parse.
func readEnd(r io.ReaderAt, size int64) (dirEnd, error) {
	span := min(size, int64(maxCommentSpan))
	if span < eocdLen {
		return dirEnd{}, invalid("not a readable zip: too short")
	}
	buf := make([]byte, span)
	if _, err := r.ReadAt(buf, size-span); err != nil && err != io.EOF {
		return dirEnd{}, invalid("not a readable zip: %v", err)
	}
	// archive/zip looks in the last 1 KiB first, then in the last 65 KiB;
	// the first hit from the end within each is the one it takes.
	p := -1
	for _, window := range []int64{1024, 65 * 1024} {
		lo := max(span-window, 0)
		if i := findEnd(buf[lo:]); i >= 0 {
			p = int(lo) + i
			break
		}
	}
	if p < 0 {
		return dirEnd{}, invalid("not a readable zip: no end of central directory record")
	}
	b := buf[p:]
	d := dirEnd{
		records: uint64(binary.LittleEndian.Uint16(b[10:])),
		size:    uint64(binary.LittleEndian.Uint32(b[12:])),
		offset:  uint64(binary.LittleEndian.Uint32(b[16:])),
	}
	endOffset := size - span + int64(p)
	if d.records == 0xffff || d.size == 0xffff || d.offset == 0xffffffff {
		if loc := endOffset - eocd64LocLen; loc >= 0 {
			var lb [eocd64LocLen]byte
			if _, err := r.ReadAt(lb[:], loc); err != nil {
				return dirEnd{}, invalid("not a readable zip: %v", err)
			}
			if binary.LittleEndian.Uint32(lb[:]) == eocd64LocSig && binary.LittleEndian.Uint32(lb[4:]) == 0 &&
				binary.LittleEndian.Uint32(lb[16:]) == 1 {
				at := binary.LittleEndian.Uint64(lb[8:])
				if at > uint64(size-eocd64Len) {
					return dirEnd{}, invalid("not a readable zip: zip64 end record lies outside the file")
				}
				var eb [eocd64Len]byte
				if _, err := r.ReadAt(eb[:], int64(at)); err != nil {
					return dirEnd{}, invalid("not a readable zip: %v", err)
				}
				if binary.LittleEndian.Uint32(eb[:]) != eocd64Sig {
					return dirEnd{}, invalid("not a readable zip: bad zip64 end record")
				}
				d.records = binary.LittleEndian.Uint64(eb[32:])
				d.size = binary.LittleEndian.Uint64(eb[40:])
				d.offset = binary.LittleEndian.Uint64(eb[48:])
				endOffset = int64(at)
			}
		}
	}
	if d.size > uint64(size) || d.offset > uint64(size) {
		return dirEnd{}, invalid("central directory lies outside the file")
	}
	d.base = endOffset - int64(d.size) - int64(d.offset)
	if d.base > 0 {
		// archive/zip falls back to a base of 0 when a directory header
		// sits at the declared offset itself.
		var sig [4]byte
		if _, err := r.ReadAt(sig[:], int64(d.offset)); err == nil && binary.LittleEndian.Uint32(sig[:]) == dirHeaderSig {
			d.base = 0
		}
	}
	return d, nil
}

// findEnd returns the last end of central directory record in b whose
// comment fits, as archive/zip's findSignatureInBlock does.
func findEnd(b []byte) int {
	for i := len(b) - eocdLen; i >= 0; i-- {
		if b[i] == 'P' && b[i+1] == 'K' && b[i+2] == 0x05 && b[i+3] == 0x06 {
			n := int(b[i+eocdLen-2]) | int(b[i+eocdLen-1])<<8
			if n+eocdLen+i > len(b) {
				return -1
			}
			return i
		}
	}
	return -1
}
