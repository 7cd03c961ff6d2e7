package wire

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"unicode/utf8"
)

// A webhook's body becomes a task's payload byte for byte, and it need not
// be UTF-8. A JSON string cannot carry such bytes (encoding/json replaces
// them with U+FFFD), so a payload that is not valid UTF-8 travels as
// payload_base64 instead of payload, in task objects and in leased jobs.
// Readers decode it back; the official clients, which ignore unknown
// fields, see no payload rather than a mangled one.

// EncodePayload returns what to send for a payload: itself as payload, or
// "" and its base64 when it is not valid UTF-8.
func EncodePayload(p string) (payload, payloadBase64 string) {
	if utf8.ValidString(p) {
		return p, ""
	}
	return "", base64.StdEncoding.EncodeToString([]byte(p))
}

func decodePayload(payload *string, payloadBase64 string) error {
	if payloadBase64 == "" {
		return nil
	}
	raw, err := base64.StdEncoding.DecodeString(payloadBase64)
	if err != nil {
		return fmt.Errorf("payload_base64: %w", err)
	}
	*payload = string(raw)
	return nil
}

// UnmarshalJSON restores a payload sent as payload_base64.
func (t *Task) UnmarshalJSON(b []byte) error {
	type plain Task
	var p plain
	if err := json.Unmarshal(b, &p); err != nil {
		return err
	}
	if err := decodePayload(&p.Payload, p.PayloadBase64); err != nil {
		return err
	}
	*t = Task(p)
	return nil
}

// UnmarshalJSON restores a payload sent as payload_base64.
func (j *Job) UnmarshalJSON(b []byte) error {
	type plain Job
	var p plain
	if err := json.Unmarshal(b, &p); err != nil {
		return err
	}
	if err := decodePayload(&p.Payload, p.PayloadBase64); err != nil {
		return err
	}
	*j = Job(p)
	return nil
}
