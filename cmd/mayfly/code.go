package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"github.com/spf13/cobra"

	"github.com/mayfly-run/mayfly/internal/client"
	"github.com/mayfly-run/mayfly/internal/id"
	"github.com/mayfly-run/mayfly/internal/wire"
)

func newCodeCmd(a *app) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "code",
		Short: "Upload and manage code packages",
		Long: `A code package is a program that tasks run: a zip of files on a stack
(a base image with a language runtime), or a container image. Pushing a code
under a name it already has makes a new revision; tasks queued afterwards run
the new one.

A code is named on the command line by its id or by its name.`,
		Example: `  mayfly code push ./worker --stack python-3.11 --runtime python --file-name main.py
  mayfly code ls
  mayfly code revisions worker`,
	}
	cmd.AddCommand(
		newCodePushCmd(a),
		newCodeLsCmd(a),
		newCodeShowCmd(a),
		newCodeRmCmd(a),
		newCodeRevisionsCmd(a),
		newCodeDownloadCmd(a),
	)
	cmd.AddCommand(newCodeQueueCmds(a)...)
	return cmd
}

// codePushCommand uploads a directory, a zip, or just an image reference.
type codePushCommand struct {
	app             *app
	name            string
	stack           string
	runtime         string
	fileName        string
	command         string
	image           string
	config          string
	env             []string
	maxConcurrency  optInt
	retries         optInt
	retriesDelay    seconds
	defaultPriority optInt
}

func newCodePushCmd(a *app) *cobra.Command {
	c := &codePushCommand{app: a}
	cmd := &cobra.Command{
		Use:   "push DIR|ZIP",
		Short: "Upload a code package, or a new revision of it",
		Long: `Upload a directory or a zip file as a code package. A directory is zipped
first: everything but .git, with file modes kept; symlinks are kept as
symlinks and must point inside the directory. The code is named after the
directory or zip unless --name says otherwise; pushing an existing name makes
a new revision.

What a task runs is --command if given; else __runner__.sh if the package has
one; else what --runtime and --file-name imply (python -> python3 FILE,
node -> node FILE, ruby, php, binary -> ./FILE, sh). An image code
(--image, package optional) runs the image's own command unless --command is
given.`,
		Example: `  mayfly code push ./hello --stack python-3.11 --runtime python --file-name hello.py
  mayfly code push build/report.zip --name report --stack node-18 --command 'node index.js' \
      --env LOG_LEVEL=debug --max-concurrency 2 --retries 3 --retries-delay 1m
  mayfly code push --name resize --image ghcr.io/acme/resize:1.4`,
		Args: cobra.MaximumNArgs(1),
		RunE: runE(c.Run),
	}
	f := cmd.Flags()
	f.StringVar(&c.name, "name", "", "code name (default: the directory or zip name)")
	f.StringVar(&c.stack, "stack", "", "stack to run on, e.g. python-3.11 (see mayfly stack ls)")
	f.StringVar(&c.runtime, "runtime", "", "runtime: python, node, ruby, php, binary or sh")
	f.StringVar(&c.fileName, "file-name", "", "file in the package that the runtime runs")
	f.StringVar(&c.command, "command", "", "command to run instead of the runtime's default")
	f.StringVar(&c.image, "image", "", "container image to run, for an image code")
	f.StringVar(&c.config, "config", "", "configuration JSON handed to every task of this code")
	f.StringArrayVar(&c.env, "env", nil, "environment variable K=V for every task (repeatable)")
	f.Var(&c.maxConcurrency, "max-concurrency", "most tasks of this code running at once (default: no limit)")
	f.Var(&c.retries, "retries", "times a failed task is retried as a new task")
	f.Var(&c.retriesDelay, "retries-delay", "wait before a retry, in seconds or as a duration such as 5m")
	f.Var(&c.defaultPriority, "default-priority", "priority (0-2) of tasks that give none")
	return cmd
}

func (c *codePushCommand) Run(ctx context.Context, args []string) error {
	up := wire.CodeUpload{
		Name:            c.name,
		Runtime:         c.runtime,
		FileName:        c.fileName,
		Stack:           c.stack,
		Image:           c.image,
		Command:         c.command,
		Config:          c.config,
		MaxConcurrency:  c.maxConcurrency.ptr(),
		Retries:         c.retries.ptr(),
		RetriesDelay:    c.retriesDelay.ptr(),
		DefaultPriority: c.defaultPriority.ptr(),
	}
	if c.config != "" && !json.Valid([]byte(c.config)) {
		return errors.New("--config is not valid JSON")
	}
	for _, kv := range c.env {
		k, v, ok := strings.Cut(kv, "=")
		if !ok || k == "" {
			return fmt.Errorf("--env %q: want KEY=VALUE", kv)
		}
		if up.EnvVars == nil {
			up.EnvVars = map[string]string{}
		}
		up.EnvVars[k] = v
	}
	if len(args) == 0 && c.image == "" {
		return errors.New("nothing to push: give a directory or zip, or --image")
	}
	if len(args) == 0 && up.Name == "" {
		return errors.New("--name is required for an image code without a package")
	}

	cl, err := c.app.client()
	if err != nil {
		return err
	}

	var pkg io.Reader
	if len(args) == 1 {
		f, name, err := openPackage(args[0])
		if err != nil {
			return err
		}
		defer f.Close()
		pkg = f
		if up.Name == "" {
			up.Name = name
		}
	}
	pkg, uploaded := withProgress(c.app.stdout, pkg)
	res, err := cl.UploadCode(ctx, up, pkg)
	uploaded()
	if err != nil {
		return err
	}
	fmt.Fprintf(c.app.stdout, "Pushed code %s (id %s, revision %d)\n", up.Name, res.ID, res.Rev)
	return nil
}

// openPackage returns the zip to upload for path and the code name it
// suggests. A directory is zipped to a temporary file, removed on Close, so
// packages of any size stream from disk.
func openPackage(path string) (io.ReadCloser, string, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return nil, "", err
	}
	if fi.IsDir() {
		abs, err := filepath.Abs(path)
		if err != nil {
			return nil, "", err
		}
		tmp, err := os.CreateTemp("", "mayfly-push-*.zip")
		if err != nil {
			return nil, "", fmt.Errorf("pack %s: %w", path, err)
		}
		pkg := &tempFile{tmp}
		if err := packDir(path, tmp); err != nil {
			pkg.Close()
			return nil, "", err
		}
		if _, err := tmp.Seek(0, io.SeekStart); err != nil {
			pkg.Close()
			return nil, "", fmt.Errorf("pack %s: %w", path, err)
		}
		return pkg, filepath.Base(abs), nil
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, "", err
	}
	ok, err := isZip(f)
	if err != nil {
		f.Close()
		return nil, "", fmt.Errorf("read %s: %w", path, err)
	}
	if !ok {
		f.Close()
		return nil, "", fmt.Errorf("%s is neither a directory nor a zip file", path)
	}
	name := filepath.Base(path)
	if ext := filepath.Ext(name); strings.EqualFold(ext, ".zip") {
		name = strings.TrimSuffix(name, ext)
	}
	return f, name, nil
}

// tempFile is a file deleted when closed.
type tempFile struct{ *os.File }

func (t *tempFile) Close() error {
	err := t.File.Close()
	if rerr := os.Remove(t.Name()); err == nil {
		err = rerr
	}
	return err
}

// allCodes lists every code of the project, page by page.
func allCodes(ctx context.Context, cl *client.Client) ([]wire.Code, error) {
	const perPage = 100 // the most the server gives per page
	var all []wire.Code
	for page := 0; ; page++ {
		codes, err := cl.ListCodes(ctx, page, perPage)
		if err != nil {
			return nil, err
		}
		// A server that ignores paging would repeat its first page forever.
		if page > 0 && len(codes) > 0 && len(all) > 0 && codes[0].ID == all[0].ID {
			return all, nil
		}
		all = append(all, codes...)
		if len(codes) < perPage {
			return all, nil
		}
	}
}

// resolveCode finds a code by id or, failing that, by name.
func resolveCode(ctx context.Context, cl *client.Client, ref string) (wire.Code, error) {
	if id.Valid(ref) {
		code, err := cl.GetCode(ctx, ref)
		if err == nil || !client.IsNotFound(err) {
			return code, err
		}
	}
	codes, err := allCodes(ctx, cl)
	if err != nil {
		return wire.Code{}, err
	}
	for _, code := range codes {
		if code.Name == ref {
			return code, nil
		}
	}
	return wire.Code{}, fmt.Errorf("no code with id or name %q", ref)
}

type codeLsCommand struct {
	app    *app
	output string
}

func newCodeLsCmd(a *app) *cobra.Command {
	c := &codeLsCommand{app: a}
	cmd := &cobra.Command{
		Use:     "ls",
		Aliases: []string{"list"},
		Short:   "List the codes of the project",
		Long:    "List every code of the project with its latest revision and what it runs on.",
		Example: `  mayfly code ls
  mayfly code ls -o json`,
		Args: cobra.NoArgs,
		RunE: runE(c.Run),
	}
	outputFlag(cmd, &c.output)
	return cmd
}

func (c *codeLsCommand) Run(ctx context.Context, _ []string) error {
	if err := checkOutput(c.output); err != nil {
		return err
	}
	cl, err := c.app.client()
	if err != nil {
		return err
	}
	codes, err := allCodes(ctx, cl)
	if err != nil {
		return err
	}
	if c.output == "json" {
		return printJSON(c.app.stdout, nonNil(codes))
	}
	tw := newTable(c.app.stdout)
	fmt.Fprintln(tw, "ID\tNAME\tREV\tSTACK\tUPDATED")
	for _, code := range codes {
		runsOn := code.Stack
		if code.Image != "" {
			runsOn = "image " + code.Image
		}
		updated := code.UpdatedAt
		if updated.IsZero() {
			updated = code.CreatedAt
		}
		fmt.Fprintf(tw, "%s\t%s\t%d\t%s\t%s\n", code.ID, code.Name, code.Rev, orDash(runsOn), fmtTime(updated))
	}
	return tw.Flush()
}

type codeShowCommand struct {
	app    *app
	output string
}

func newCodeShowCmd(a *app) *cobra.Command {
	c := &codeShowCommand{app: a}
	cmd := &cobra.Command{
		Use:     "show ID|NAME",
		Aliases: []string{"get"},
		Short:   "Show a code",
		Long:    "Show a code's settings and its latest revision, as key: value lines or as JSON.",
		Example: `  mayfly code show hello
  mayfly code show 65f1c0ffee0123456789abcd -o json`,
		Args: cobra.ExactArgs(1),
		RunE: runE(c.Run),
	}
	outputFlag(cmd, &c.output)
	return cmd
}

func (c *codeShowCommand) Run(ctx context.Context, args []string) error {
	if err := checkOutput(c.output); err != nil {
		return err
	}
	cl, err := c.app.client()
	if err != nil {
		return err
	}
	code, err := resolveCode(ctx, cl, args[0])
	if err != nil {
		return err
	}
	// A list entry may be a summary; the code itself has every field.
	if code, err = cl.GetCode(ctx, code.ID); err != nil {
		return err
	}
	if c.output == "json" {
		return printJSON(c.app.stdout, code)
	}
	env := make([]string, 0, len(code.EnvVars))
	for k, v := range code.EnvVars {
		env = append(env, k+"="+v)
	}
	slices.Sort(env)
	return keyValues(c.app.stdout, [][2]string{
		{"id", code.ID},
		{"name", code.Name},
		{"rev", strconv.Itoa(code.Rev)},
		{"stack", code.Stack},
		{"image", code.Image},
		{"runtime", code.Runtime},
		{"file_name", code.FileName},
		{"command", code.Command},
		{"config", code.Config},
		{"env_vars", strings.Join(env, " ")},
		{"max_concurrency", unsetIfNegative(code.MaxConcurrency)},
		{"retries", strconv.Itoa(code.Retries)},
		{"retries_delay", strconv.Itoa(code.RetriesDelay) + "s"},
		{"default_priority", unsetIfNegative(code.DefaultPriority)},
		{"paused", strconv.FormatBool(code.Paused)},
		{"package_size", strconv.FormatInt(code.PackageSize, 10)},
		{"checksum", code.LatestChecksum},
		{"created_at", fmtTime(code.CreatedAt)},
		{"updated_at", fmtTime(code.UpdatedAt)},
	})
}

// unsetIfNegative prints IronWorker's "not set" markers (-1, -1000) as such.
func unsetIfNegative(n int) string {
	if n < 0 {
		return "unset"
	}
	return strconv.Itoa(n)
}

type codeRmCommand struct{ app *app }

func newCodeRmCmd(a *app) *cobra.Command {
	c := &codeRmCommand{app: a}
	return &cobra.Command{
		Use:     "rm ID|NAME",
		Aliases: []string{"delete"},
		Short:   "Delete a code and all its revisions",
		Long:    "Delete a code and all its revisions. Tasks that already ran keep their records.",
		Example: "  mayfly code rm hello",
		Args:    cobra.ExactArgs(1),
		RunE:    runE(c.Run),
	}
}

func (c *codeRmCommand) Run(ctx context.Context, args []string) error {
	cl, err := c.app.client()
	if err != nil {
		return err
	}
	code, err := resolveCode(ctx, cl, args[0])
	if err != nil {
		return err
	}
	if err := cl.DeleteCode(ctx, code.ID); err != nil {
		return err
	}
	fmt.Fprintf(c.app.stdout, "Deleted code %s (id %s)\n", code.Name, code.ID)
	return nil
}

type codeRevisionsCommand struct {
	app    *app
	output string
}

func newCodeRevisionsCmd(a *app) *cobra.Command {
	c := &codeRevisionsCommand{app: a}
	cmd := &cobra.Command{
		Use:     "revisions ID|NAME",
		Aliases: []string{"revs"},
		Short:   "List the revisions of a code",
		Long:    "List every uploaded revision of a code, with its size and checksum; code download --revision fetches one.",
		Example: `  mayfly code revisions hello
  mayfly code download hello --revision 2`,
		Args: cobra.ExactArgs(1),
		RunE: runE(c.Run),
	}
	outputFlag(cmd, &c.output)
	return cmd
}

func (c *codeRevisionsCommand) Run(ctx context.Context, args []string) error {
	if err := checkOutput(c.output); err != nil {
		return err
	}
	cl, err := c.app.client()
	if err != nil {
		return err
	}
	code, err := resolveCode(ctx, cl, args[0])
	if err != nil {
		return err
	}
	revs, err := cl.CodeRevisions(ctx, code.ID)
	if err != nil {
		return err
	}
	if c.output == "json" {
		return printJSON(c.app.stdout, nonNil(revs))
	}
	tw := newTable(c.app.stdout)
	fmt.Fprintln(tw, "REV\tID\tSIZE\tCHECKSUM\tCREATED")
	for _, r := range revs {
		fmt.Fprintf(tw, "%d\t%s\t%d\t%s\t%s\n", r.Rev, r.ID, r.Size, orDash(r.Checksum), fmtTime(r.CreatedAt))
	}
	return tw.Flush()
}

type codeDownloadCommand struct {
	app      *app
	out      string
	revision int
}

func newCodeDownloadCmd(a *app) *cobra.Command {
	c := &codeDownloadCommand{app: a}
	cmd := &cobra.Command{
		Use:   "download ID|NAME",
		Short: "Download the zip of a code",
		Long: `Download the zip of a code's latest revision, or of --revision N, to NAME.zip
in the current directory, to -o FILE, or with -o - to standard output.`,
		Example: `  mayfly code download hello
  mayfly code download hello --revision 2 -o hello-2.zip
  mayfly code download hello -o - | unzip -l /dev/stdin`,
		Args: cobra.ExactArgs(1),
		RunE: runE(c.Run),
	}
	cmd.Flags().StringVarP(&c.out, "output", "o", "", "file to write, - for standard output (default NAME.zip)")
	cmd.Flags().IntVar(&c.revision, "revision", 0, "revision to download (default: the latest)")
	return cmd
}

func (c *codeDownloadCommand) Run(ctx context.Context, args []string) error {
	if c.revision < 0 {
		return fmt.Errorf("--revision %d: revisions start at 1", c.revision)
	}
	cl, err := c.app.client()
	if err != nil {
		return err
	}
	code, err := resolveCode(ctx, cl, args[0])
	if err != nil {
		return err
	}
	if c.out == "-" {
		return cl.DownloadCode(ctx, code.ID, c.revision, c.app.stdout)
	}
	out := c.out
	if out == "" {
		out = strings.NewReplacer("/", "_", `\`, "_").Replace(code.Name) + ".zip"
	}
	// Write beside the target and rename, so a failed download leaves no
	// half-written zip under the real name.
	// OpenFile rather than CreateTemp, so the file gets the mode the umask
	// gives new files, not CreateTemp's 0600.
	tmpName := filepath.Join(filepath.Dir(out), fmt.Sprintf(".%s.%d.tmp", filepath.Base(out), os.Getpid()))
	tmp, err := os.OpenFile(tmpName, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o666)
	if err != nil {
		return fmt.Errorf("download to %s: %w", out, err)
	}
	defer os.Remove(tmp.Name()) // fails harmlessly after the rename
	if err := cl.DownloadCode(ctx, code.ID, c.revision, tmp); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("download to %s: %w", out, err)
	}
	if err := os.Rename(tmp.Name(), out); err != nil {
		return fmt.Errorf("download to %s: %w", out, err)
	}
	rev := c.revision
	if rev == 0 {
		rev = code.Rev
	}
	fmt.Fprintf(c.app.stdout, "Downloaded code %s revision %d to %s\n", code.Name, rev, out)
	return nil
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// nonNil makes an empty list print as [] rather than null.
func nonNil[T any](s []T) []T {
	if s == nil {
		return []T{}
	}
	return s
}
