// Package seed loads a municipality into parkd from one JSON file: its zones,
// its address register, a BRP extract, and the permits to issue with the hours
// to buy for each. `make run` loads the demo municipality with it; a real
// municipality's first setup can be loaded the same way. Permits are issued and
// topped up through the worker's own handlers, under request IDs derived from
// the address, so that the same rules apply as to any request and loading a
// file twice changes nothing.
package seed

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"maps"
	"slices"

	"github.com/hibiken/asynq"

	"github.com/parkd/parkd/domain"
	"github.com/parkd/parkd/jobs"
	"github.com/parkd/parkd/repo"
	"github.com/parkd/parkd/textfile"
	"github.com/parkd/parkd/worker"
)

// Municipality is what a seed file holds.
type Municipality struct {
	Zones         map[string]domain.ZoneSpec `json:"zones"`
	Addresses     []Address                  `json:"addresses"`
	Registrations []Registration             `json:"registrations"`
	Permits       []Permit                   `json:"permits"`
}

// Address is an entry of the address register: Zone nil for an address in no
// permit zone.
type Address struct {
	AddressID   string  `json:"address_id"`
	Zone        *string `json:"zone"`
	Postcode    *string `json:"postcode,omitempty"`
	HouseNumber *string `json:"house_number,omitempty"`
}

// Registration is a resident registered at an address (the BRP).
type Registration struct {
	ResidentID string `json:"resident_id"`
	AddressID  string `json:"address_id"`
}

// Permit is a permit to issue, and the hours to buy on it.
type Permit struct {
	ResidentID string `json:"resident_id"`
	AddressID  string `json:"address_id"`
	TopupHours int    `json:"topup_hours"`
}

// ReadFile reads a seed file. Hand-edited files come from editors that write a
// byte-order mark or UTF-16 (Notepad's "Unicode"), which encoding/json would
// refuse as a syntax error; a field the format does not have is refused, not
// ignored, as it is most likely a misspelt one.
func ReadFile(name string) (*Municipality, error) {
	text, err := textfile.ReadFile(name)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	var m Municipality
	dec := json.NewDecoder(bytes.NewReader(text.Bytes))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&m); err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	return &m, nil
}

// Report is what Load did.
type Report struct {
	// Issued are the permits that exist after the load (issued now or by an
	// earlier load of the same file).
	Issued []Issued
	// Refused are the permits the rules refused, with the rejection.
	Refused []Refused
}

// Issued is a permit of the file with the ID parkd gave it.
type Issued struct {
	PermitID string
	Permit
	// TopupRefused is the rejection of the top-up, if the rules refused it.
	TopupRefused string
}

// Refused is a permit of the file that was not issued, and why.
type Refused struct {
	Permit
	Outcome string // the request's recorded rejection
}

// Load writes m into store: zones, addresses and registrations as they are in
// the file, then each permit through the worker's handlers. It stops at the
// first error; what it wrote until then stays, and loading again completes it.
func Load(ctx context.Context, store *repo.Store, log *slog.Logger, m *Municipality) (Report, error) {
	for _, code := range slices.Sorted(maps.Keys(m.Zones)) {
		z, err := domain.CompileZone(code, m.Zones[code])
		if err != nil {
			return Report{}, fmt.Errorf("zone %s: %w", code, err)
		}
		if err := repo.PutZone(ctx, store.DB, z); err != nil {
			return Report{}, err
		}
	}
	for _, a := range m.Addresses {
		if err := repo.PutAddress(ctx, store.DB, &repo.Address{ID: a.AddressID, Zone: a.Zone, Postcode: a.Postcode, HouseNumber: a.HouseNumber}); err != nil {
			return Report{}, err
		}
	}
	for _, r := range m.Registrations {
		if _, err := repo.PutRegistration(ctx, store.DB, &repo.Registration{ResidentID: r.ResidentID, AddressID: r.AddressID}); err != nil {
			return Report{}, err
		}
	}
	h := &worker.Handlers{Store: store, Log: log}
	var rep Report
	for _, p := range m.Permits {
		if err := load(ctx, h, p, &rep); err != nil {
			return rep, fmt.Errorf("permit for %s: %w", p.AddressID, err)
		}
	}
	return rep, nil
}

// load issues p and buys its hours, under request IDs derived from its
// address, and adds the outcome to rep.
func load(ctx context.Context, h *worker.Handlers, p Permit, rep *Report) error {
	rid := "seed.issue." + p.AddressID
	task, err := jobs.NewPermitIssue(jobs.PermitIssue{RequestID: rid, ResidentID: p.ResidentID, AddressID: p.AddressID})
	if err != nil {
		return err
	}
	var permit struct { // all of the permit the outcome shows that a seed needs
		ID string `json:"id"`
	}
	refused, err := handle(ctx, h.Store, rid, h.PermitIssue, task, &permit)
	if err != nil || refused != "" {
		if refused != "" {
			rep.Refused = append(rep.Refused, Refused{Permit: p, Outcome: refused})
		}
		return err
	}
	issued := Issued{PermitID: permit.ID, Permit: p}
	if p.TopupHours > 0 {
		rid := "seed.topup." + p.AddressID
		task, err := jobs.NewPermitTopup(jobs.PermitTopup{RequestID: rid, PermitID: permit.ID, Hours: p.TopupHours, PaymentRef: "seed-" + p.AddressID})
		if err != nil {
			return err
		}
		if issued.TopupRefused, err = handle(ctx, h.Store, rid, h.PermitTopup, task, nil); err != nil {
			return err
		}
	}
	rep.Issued = append(rep.Issued, issued)
	return nil
}

// handle runs task, request rid, through handler and reads the outcome it
// recorded: the rejection, or the result into result (unless nil).
func handle(ctx context.Context, store *repo.Store, rid string, handler func(context.Context, *asynq.Task) error, task *asynq.Task, result any) (refused string, err error) {
	if err := handler(ctx, task); err != nil {
		return "", err
	}
	out, err := repo.GetRequest(ctx, store.DB, rid)
	switch {
	case err != nil:
		return "", err
	case out.Status != repo.RequestApplied:
		return string(out.Error), nil
	case result != nil:
		return "", json.Unmarshal(out.Result, result)
	}
	return "", nil
}
