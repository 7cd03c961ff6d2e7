package main

import (
	"io"
	"os"
	"time"

	"github.com/schollz/progressbar/v3"
	"golang.org/x/term"
)

// progressMin is the package size from which code push draws a progress
// bar; smaller uploads are over before a bar would tell anything.
const progressMin = 1 << 20

// withProgress wraps an upload of pkg in a progress bar drawn on out, when
// out is a terminal and pkg a file of at least progressMin bytes. done
// clears the bar; call it once the upload ended, whatever the outcome.
func withProgress(out io.Writer, pkg io.Reader) (r io.Reader, done func()) {
	f, ok := out.(*os.File)
	if pkg == nil || !ok || !term.IsTerminal(int(f.Fd())) {
		return pkg, func() {}
	}
	st, ok := pkg.(interface{ Stat() (os.FileInfo, error) })
	if !ok {
		return pkg, func() {}
	}
	fi, err := st.Stat()
	if err != nil || fi.Size() < progressMin {
		return pkg, func() {}
	}
	bar := progressbar.NewOptions64(fi.Size(),
		progressbar.OptionSetWriter(out),
		progressbar.OptionSetDescription("uploading"),
		progressbar.OptionShowBytes(true),
		progressbar.OptionSetWidth(30),
		progressbar.OptionThrottle(100*time.Millisecond),
		progressbar.OptionClearOnFinish(),
		progressbar.OptionSetPredictTime(true),
	)
	pr := progressbar.NewReader(pkg, bar)
	return &pr, func() { _ = bar.Finish() }
}
