package api

import (
	"encoding/json"
	"errors"
	"io"
	"mime"
	"net/http"
	"strconv"
	"strings"

	"github.com/mayfly-run/mayfly/internal/mayfly"
	"github.com/mayfly-run/mayfly/internal/wire"
)

func codeJSON(c mayfly.Code) wire.Code {
	return wire.Code{
		ID: c.CodeID, ProjectID: c.ProjectID, Name: c.Name, Runtime: c.Runtime, FileName: c.FileName,
		Stack: c.Stack, Image: c.Image, Command: c.Command, Config: c.Config, EnvVars: c.EnvVars,
		MaxConcurrency: c.MaxConcurrency, Retries: c.Retries, RetriesDelay: c.RetriesDelay, RetriesBackoff: c.RetriesBackoff,
		DefaultPriority: c.DefaultPriority, Rev: c.Rev, LatestHistoryID: c.CodeRevision.ID,
		LatestChecksum: c.PackageSHA256, PackageSize: c.PackageSize, Paused: c.Paused,
		CreatedAt: c.CreatedAt, UpdatedAt: c.UpdatedAt, LatestChange: c.UpdatedAt,
	}
}

// uploadCode reads the multipart upload as a stream: the `data` field must
// come before `file` (as every client sends it), so the zip is never held
// in memory.
//
// A plain JSON body (the Ruby gem's codes.register) is the 'data' field
// alone: an image code, or new options for an existing code.
func (a *API) uploadCode(w http.ResponseWriter, r *http.Request) error {
	ct, _, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if err == nil && (ct == "application/json" || strings.HasSuffix(ct, "+json")) {
		var up wire.CodeUpload
		if err := a.readJSON(w, r, &up); err != nil {
			return err
		}
		return a.storeCode(w, r, up, nil)
	}
	if err != nil || ct != "multipart/form-data" {
		return errStatus(http.StatusBadRequest, "Upload must be multipart/form-data with a 'data' JSON field and a 'file' zip field, or a JSON body for a code without a zip")
	}
	limit := a.svc.Config().MaxCodeBytes + a.opts.MaxRequestBytes
	r.Body = http.MaxBytesReader(w, r.Body, limit)
	mr, err := r.MultipartReader()
	if err != nil {
		return errStatus(http.StatusBadRequest, "Malformed multipart body: "+err.Error())
	}
	var up wire.CodeUpload
	haveData := false
	for {
		part, err := mr.NextPart()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			var mbe *http.MaxBytesError
			if errors.As(err, &mbe) {
				return err
			}
			return errStatus(http.StatusBadRequest, "Malformed multipart body: "+err.Error())
		}
		switch part.FormName() {
		case "data":
			b, err := io.ReadAll(io.LimitReader(part, 1<<20))
			if err != nil {
				return errStatus(http.StatusBadRequest, "Could not read the 'data' field: "+err.Error())
			}
			if err := json.Unmarshal(b, &up); err != nil {
				return errStatus(http.StatusBadRequest, "The 'data' field is not valid JSON: "+jsonError(err).Error())
			}
			haveData = true
		case "file":
			if !haveData {
				return errStatus(http.StatusBadRequest, "The 'data' field must come before the 'file' field")
			}
			return a.storeCode(w, r, up, part)
		}
	}
	if !haveData {
		return errStatus(http.StatusBadRequest, "Missing the 'data' field (JSON with at least 'name')")
	}
	return a.storeCode(w, r, up, nil)
}

func (a *API) storeCode(w http.ResponseWriter, r *http.Request, up wire.CodeUpload, zip io.Reader) error {
	code, err := a.svc.UploadCode(r.Context(), projectOf(r).ID, up, zip)
	if err != nil {
		return err
	}
	return writeJSON(w, wire.UploadResponse{ID: code.CodeID, Msg: "Upload successful.", Rev: code.Rev})
}

func (a *API) listCodes(w http.ResponseWriter, r *http.Request) error {
	pg, err := page(r)
	if err != nil {
		return err
	}
	codes, err := a.svc.ListCodes(r.Context(), projectOf(r).ID, pg)
	if err != nil {
		return err
	}
	out := wire.CodeList{Codes: make([]wire.Code, 0, len(codes))}
	for _, c := range codes {
		out.Codes = append(out.Codes, codeJSON(c))
	}
	return writeJSON(w, out)
}

func (a *API) getCode(w http.ResponseWriter, r *http.Request) error {
	c, err := a.svc.GetCode(r.Context(), projectOf(r).ID, r.PathValue("id"))
	if err != nil {
		return err
	}
	return writeJSON(w, codeJSON(c))
}

func (a *API) deleteCode(w http.ResponseWriter, r *http.Request) error {
	if err := a.svc.DeleteCode(r.Context(), projectOf(r).ID, r.PathValue("id")); err != nil {
		return err
	}
	return writeJSON(w, wire.Msg{Msg: "Deleted"})
}

func (a *API) codeRevisions(w http.ResponseWriter, r *http.Request) error {
	pg, err := page(r)
	if err != nil {
		return err
	}
	revs, err := a.svc.CodeRevisions(r.Context(), projectOf(r).ID, r.PathValue("id"), pg)
	if err != nil {
		return err
	}
	out := wire.RevisionList{Revisions: make([]wire.Revision, 0, len(revs))}
	for _, v := range revs {
		out.Revisions = append(out.Revisions, wire.Revision{
			ID: v.ID, CodeID: v.CodeID, ProjectID: v.ProjectID, Name: v.Name, Rev: v.Rev,
			Runtime: v.Runtime, FileName: v.FileName, Stack: v.Stack, Image: v.Image,
			Checksum: v.PackageSHA256, Size: v.PackageSize, CreatedAt: v.CreatedAt,
		})
	}
	return writeJSON(w, out)
}

func (a *API) downloadCode(w http.ResponseWriter, r *http.Request) error {
	rev, err := intParam(r, "revision")
	if err != nil {
		return err
	}
	n := 0
	if rev != nil {
		n = *rev
	}
	rc, v, err := a.svc.OpenCodePackage(r.Context(), projectOf(r).ID, r.PathValue("id"), n)
	if err != nil {
		return err
	}
	defer rc.Close()
	w.Header().Set("Content-Type", "application/zip")
	w.Header().Set("Content-Length", strconv.FormatInt(v.PackageSize, 10))
	w.Header().Set("Content-Disposition", `attachment; filename="`+sanitizeFileName(v.Name)+`_rev`+strconv.Itoa(v.Rev)+`.zip"`)
	// Headers are gone by now; a failed copy shows as a short body.
	_, _ = io.Copy(w, rc)
	return nil
}

func sanitizeFileName(s string) string {
	b := []byte(s)
	for i, c := range b {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.') {
			b[i] = '_'
		}
	}
	return string(b)
}
