package runner_test

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/mayfly-run/mayfly/internal/api"
	"github.com/mayfly-run/mayfly/internal/service"
	"github.com/mayfly-run/mayfly/internal/store"
	"github.com/mayfly-run/mayfly/internal/wire"
)

// TestWebhookBinaryPayloadReachesTask posts random bytes (NULs and invalid
// UTF-8 among them) to the webhook of a real API, and the task, run by the
// real runner on the real engine, finds exactly those bytes in
// $PAYLOAD_FILE.
func TestWebhookBinaryPayloadReachesTask(t *testing.T) {
	t.Parallel()
	b := setup(t, service.Config{}, 1)
	b.push("digest", wire.CodeUpload{Command: `wc -c < "$PAYLOAD_FILE"; sha256sum "$PAYLOAD_FILE"`}, map[string]string{"x": ""})
	srv := httptest.NewServer(api.New(b.svc, api.Options{Version: "test", Log: b.quiet}))
	t.Cleanup(srv.Close)

	rng := rand.New(rand.NewPCG(3, 4))
	bin := make([]byte, 64<<10)
	for i := range bin {
		bin[i] = byte(rng.UintN(256))
	}
	copy(bin, "\x00\xff\xfe\x80\r\n")
	req, _ := http.NewRequest("POST", srv.URL+"/2/projects/"+b.project+"/tasks/webhook?code_name=digest", bytes.NewReader(bin))
	req.Header.Set("Authorization", "OAuth "+b.token)
	req.Header.Set("Content-Type", "application/octet-stream")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("webhook: %d %s", resp.StatusCode, body)
	}
	var wh wire.WebhookResponse
	if err := json.Unmarshal(body, &wh); err != nil {
		t.Fatal(err)
	}
	tk := b.waitEnd(wh.ID)
	log := b.log(wh.ID)
	if tk.Status != store.StatusComplete {
		t.Fatalf("status %s msg %q; log:\n%s", tk.Status, tk.Msg, log)
	}
	sum := sha256.Sum256(bin)
	for _, want := range []string{fmt.Sprintf("%d\n", len(bin)), hex.EncodeToString(sum[:]) + "  /mnt/mayfly/payload.json"} {
		if !strings.Contains(log, want) {
			t.Errorf("log lacks %q (the payload in the container differs):\n%s", want, log)
		}
	}
}
