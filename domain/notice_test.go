package domain_test

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/parkd/parkd/domain"
)

// Every instant parkd answers is UTC: a notice's instant, computed on the
// zone's local clock (an invalid day's start, a paid window's end), too.
func TestNoticeInstantsAreUTC(t *testing.T) {
	ams, err := time.LoadLocation("Europe/Amsterdam")
	if err != nil {
		t.Fatal(err)
	}
	n := domain.Notice{Code: domain.NoticeCutInvalidDay, Message: "m", At: time.Date(2026, 11, 28, 0, 0, 0, 0, ams)}
	b, err := json.Marshal(n)
	if err != nil {
		t.Fatal(err)
	}
	if want := `"at":"2026-11-27T23:00:00Z"`; !strings.Contains(string(b), want) {
		t.Fatalf("notice = %s, want %s", b, want)
	}
}
