package api_test

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/mayfly-run/mayfly/internal/service"
	"github.com/mayfly-run/mayfly/internal/wire"
)

// TestWebhookBinaryBody posts random bytes, NULs and invalid UTF-8
// included, to the webhook: the task shows them as payload_base64, exactly,
// and a runner leasing the task gets them exactly.
func TestWebhookBinaryBody(t *testing.T) {
	t.Parallel()
	b := setup(t, service.Config{})
	b.pushHello()
	rng := rand.New(rand.NewPCG(1, 2))
	bin := make([]byte, 4096)
	for i := range bin {
		bin[i] = byte(rng.UintN(256))
	}
	copy(bin, "\x00\xff\xfe\x80 not UTF-8")
	st, body := b.do("POST", b.url("/tasks/webhook?code_name=hello"), bytes.NewReader(bin), "Content-Type", "application/octet-stream")
	if st != 200 {
		t.Fatalf("webhook: %d %s", st, body)
	}
	taskID := decode[wire.WebhookResponse](t, body).ID

	st, body = b.do("GET", b.url("/tasks/"+taskID), nil)
	var raw map[string]any
	if err := json.Unmarshal(body, &raw); err != nil || st != 200 {
		t.Fatalf("task: %d %s", st, body)
	}
	if _, ok := raw["payload"]; ok {
		t.Errorf("task JSON carries a (mangled) payload next to payload_base64: %.200s", body)
	}
	b64, _ := raw["payload_base64"].(string)
	got, err := base64.StdEncoding.DecodeString(b64)
	if err != nil || !bytes.Equal(got, bin) {
		t.Fatalf("payload_base64 decodes to %d bytes (%v), want the %d posted", len(got), err, len(bin))
	}
	if tk := decode[wire.Task](t, body); tk.Payload != string(bin) {
		t.Fatalf("wire.Task does not restore the payload")
	}

	// A text body stays a plain payload.
	st, body = b.do("POST", b.url("/tasks/webhook?code_name=hello"), strings.NewReader("héllo\n"))
	textID := decode[wire.WebhookResponse](t, body).ID
	_, body = b.do("GET", b.url("/tasks/"+textID), nil)
	if st != 200 || strings.Contains(string(body), "payload_base64") || decode[wire.Task](t, body).Payload != "héllo\n" {
		t.Fatalf("text webhook task: %s", body)
	}

	// The runner protocol carries it the same way.
	st, body = b.do("POST", b.srv.URL+"/runner/lease", strings.NewReader(`{"runner_id":"r1","max":5,"wait_ms":10}`))
	if st != 200 || !strings.Contains(string(body), `"payload_base64"`) {
		t.Fatalf("lease: %d %.300s", st, body)
	}
	found := false
	for _, j := range decode[wire.LeaseResponse](t, body).Jobs {
		if j.TaskID == taskID {
			found = j.Payload == string(bin)
		}
	}
	if !found {
		t.Fatalf("leased job lacks the exact payload")
	}
}
