package stack

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"os/exec"
	"slices"
	"strings"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/docker/docker/api/types/build"
	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/api/types/image"
	"github.com/docker/docker/client"
)

// engine is the little of the Docker API that stacks need.
type engine struct {
	cli *client.Client
}

func connect(ctx context.Context) (engine, error) {
	cli, err := client.NewClientWithOpts(client.FromEnv, client.WithAPIVersionNegotiation())
	if err != nil {
		return engine{}, fmt.Errorf("docker client: %w", err)
	}
	if _, err := cli.Ping(ctx); err != nil {
		cli.Close()
		return engine{}, fmt.Errorf("connect to docker engine at %s: %w", cli.DaemonHost(), err)
	}
	return engine{cli: cli}, nil
}

func (e engine) close() { e.cli.Close() }

// imageState is what is tagged as a stack's reference now; zero if nothing.
type imageState struct {
	id     string
	digest string
}

func (e engine) digestOf(ctx context.Context, ref string) (imageState, error) {
	img, err := e.cli.ImageInspect(ctx, ref)
	if cerrdefs.IsNotFound(err) {
		return imageState{}, nil
	}
	if err != nil {
		return imageState{}, fmt.Errorf("inspect image %s: %w", ref, err)
	}
	st := imageState{id: img.ID}
	if img.Config != nil {
		st.digest = img.Config.Labels[LabelDigest]
	}
	return st, nil
}

// buildTries bounds the builds of one stack that meet an image removed
// under them (see build).
const buildTries = 3

// build builds the recipe in tarball as ref. The classic builder looks
// for a cached step among every image made from the same parent, and an
// image removed meanwhile (a runner pruning the code images it baked on a
// stack, a rebuild dropping the image it replaced) fails the build with
// "unable to find image" and the id of that image, which is no fault of
// the recipe: such a build is tried again.
func (e engine) build(ctx context.Context, tarball []byte, ref string, labels map[string]string, args map[string]*string, noCache bool, out io.Writer) error {
	var err error
	for try := 1; try <= buildTries; try++ {
		if err = e.buildOnce(ctx, bytes.NewReader(tarball), ref, labels, args, noCache, out); err == nil || !removedUnder(err) || ctx.Err() != nil {
			return err
		}
		fmt.Fprintf(out, "an image the build was reading was removed under it (%v); building again (try %d of %d)\n", err, try+1, buildTries)
	}
	return err
}

// removedUnder tells a build that met an image removed while it ran, named
// by its id, from one whose recipe names an image that is not there.
func removedUnder(err error) bool {
	return strings.Contains(err.Error(), `unable to find image "sha256:`)
}

func (e engine) buildOnce(ctx context.Context, buildContext io.Reader, ref string, labels map[string]string, args map[string]*string, noCache bool, out io.Writer) error {
	resp, err := e.cli.ImageBuild(ctx, buildContext, build.ImageBuildOptions{
		Tags:        []string{ref},
		Labels:      labels,
		BuildArgs:   args,
		Dockerfile:  "Dockerfile",
		NoCache:     noCache,
		PullParent:  false,
		Remove:      true,
		ForceRemove: true,
		// RUN steps only shape the file system; they get no network.
		NetworkMode: "none",
		// BuildKit would need a session; the classic builder needs nothing.
		Version: build.BuilderV1,
	})
	if err != nil {
		return fmt.Errorf("start image build of %s: %w", ref, err)
	}
	defer resp.Body.Close()
	return copyBuildStream(out, resp.Body)
}

// buildMessage is one line of the JSON stream the engine answers a build
// with.
type buildMessage struct {
	Stream      string `json:"stream"`
	Error       string `json:"error"`
	ErrorDetail *struct {
		Message string `json:"message"`
	} `json:"errorDetail"`
}

// copyBuildStream prints the build's own output to out and returns the first
// error the engine reports in the stream: a failed build still answers 200.
func copyBuildStream(out io.Writer, stream io.Reader) error {
	dec := json.NewDecoder(stream)
	for {
		var m buildMessage
		err := dec.Decode(&m)
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("read build output: %w", err)
		}
		if m.ErrorDetail != nil && m.ErrorDetail.Message != "" {
			return errors.New(m.ErrorDetail.Message)
		}
		if m.Error != "" {
			return errors.New(m.Error)
		}
		if m.Stream != "" {
			if _, err := io.WriteString(out, m.Stream); err != nil {
				return fmt.Errorf("write build output: %w", err)
			}
		}
	}
}

// removeUnused removes an image that a rebuild untagged. Failure is not an
// error: a container may still use it, and it does no harm.
func (e engine) removeUnused(ctx context.Context, id string) {
	_, _ = e.cli.ImageRemove(ctx, id, image.RemoveOptions{PruneChildren: true})
}

func (e engine) installed(ctx context.Context) ([]string, error) {
	imgs, err := e.cli.ImageList(ctx, image.ListOptions{Filters: filters.NewArgs(filters.Arg("label", LabelStack))})
	if err != nil {
		return nil, fmt.Errorf("list stack images: %w", err)
	}
	var out []string
	for _, img := range imgs {
		name := img.Labels[LabelStack]
		// Only the image the stack's reference points to counts; older
		// builds may linger untagged.
		if name != "" && slices.Contains(img.RepoTags, Image(name)) && !slices.Contains(out, name) {
			out = append(out, name)
		}
	}
	slices.Sort(out)
	return out, nil
}

// importRootfs makes image ref from the file tree at dir. tar (essential
// on Debian) writes the archive, as it keeps hard links, owners and device
// nodes as they are; --one-file-system keeps it inside the tree even if
// something is still mounted there.
func (e engine) importRootfs(ctx context.Context, dir, ref string, labels map[string]string) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	cmd := exec.CommandContext(ctx, "tar", "--numeric-owner", "--one-file-system", "-C", dir, "-cf", "-", ".")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return fmt.Errorf("tar of %s: %w", dir, err)
	}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start tar of %s: %w", dir, err)
	}
	var changes []string
	for _, k := range slices.Sorted(maps.Keys(labels)) {
		changes = append(changes, fmt.Sprintf("LABEL %s=%q", k, labels[k]))
	}
	resp, ierr := e.cli.ImageImport(ctx, image.ImportSource{Source: stdout, SourceName: "-"}, ref,
		image.ImportOptions{Changes: changes, Message: "debootstrap base of a mayfly stack"})
	if ierr == nil {
		ierr = copyBuildStream(io.Discard, resp)
		resp.Close()
	}
	if ierr != nil {
		// The engine stopped reading: stop tar rather than wait for it.
		cancel()
	}
	werr := cmd.Wait()
	if ierr != nil {
		return fmt.Errorf("docker import as %s: %w", ref, ierr)
	}
	if werr != nil {
		return fmt.Errorf("tar of %s: %w: %s", dir, werr, bytes.TrimSpace(stderr.Bytes()))
	}
	return nil
}

// removeOtherBases removes the base images of stack name other than keep:
// those of older recipes. Failure does no harm, as for removeUnused.
func (e engine) removeOtherBases(ctx context.Context, name, keep string) {
	imgs, err := e.cli.ImageList(ctx, image.ListOptions{Filters: filters.NewArgs(filters.Arg("label", LabelBase+"="+name))})
	if err != nil {
		return
	}
	for _, img := range imgs {
		for _, tag := range img.RepoTags {
			if tag != keep && strings.HasPrefix(tag, BaseRepository+":") {
				_, _ = e.cli.ImageRemove(ctx, tag, image.RemoveOptions{PruneChildren: true})
			}
		}
	}
}

// imageSize returns the size of image ref, 0 if it is not there.
func (e engine) imageSize(ctx context.Context, ref string) (int64, error) {
	img, err := e.cli.ImageInspect(ctx, ref)
	if cerrdefs.IsNotFound(err) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("inspect image %s: %w", ref, err)
	}
	return img.Size, nil
}
