package bench

import (
	"testing"
	"time"
)

func TestStartBodyAutostopIsWholeMinutes(t *testing.T) {
	now := time.Date(2026, 11, 25, 12, 0, 7, 600_000_000, time.UTC)
	b := startBody("AB-123-C", true, now, 1)
	if b["start_at"] != "2026-11-25T12:00:07Z" || b["end_at"] != "2026-11-25T12:02:07Z" {
		t.Fatalf("body %v", b)
	}
	if b := startBody("AB-123-C", false, now, 1); len(b) != 1 {
		t.Fatalf("plain start body %v", b)
	}
}
