package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"regexp"
	"sort"

	"github.com/parkd/parkd/domain"
	"github.com/parkd/parkd/jobs"
	"github.com/parkd/parkd/repo"
	"github.com/parkd/parkd/textfile"
	"github.com/parkd/parkd/worker"
)

// seedFile is a municipality to load: zones, the address register, a BRP extract,
// and permits to issue (with hours to buy). Loading it twice changes nothing.
type seedFile struct {
	Zones         map[string]domain.ZoneSpec `json:"zones"`
	Addresses     []seedAddress              `json:"addresses"`
	Registrations []seedRegistration         `json:"registrations"`
	Permits       []seedPermit               `json:"permits"`
}

type seedAddress struct {
	AddressID   string  `json:"address_id"`
	Zone        *string `json:"zone"`
	Postcode    *string `json:"postcode,omitempty"`
	HouseNumber *string `json:"house_number,omitempty"`
}

type seedRegistration struct {
	ResidentID string `json:"resident_id"`
	AddressID  string `json:"address_id"`
}

type seedPermit struct {
	ResidentID string `json:"resident_id"`
	AddressID  string `json:"address_id"`
	TopupHours int    `json:"topup_hours"`
}

func seedCmd(ctx context.Context, cfg config, log *slog.Logger, args []string) error {
	if len(args) != 1 {
		return fmt.Errorf("usage: parkd seed FILE.json")
	}
	// Hand-edited files come from editors that write a byte-order mark or
	// UTF-16 (Notepad's "Unicode"), which encoding/json refuses as a syntax error.
	text, err := textfile.ReadFile(args[0])
	if err != nil {
		return fmt.Errorf("%s: %w", args[0], err)
	}
	var f seedFile
	dec := json.NewDecoder(bytes.NewReader(text.Bytes))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&f); err != nil {
		return fmt.Errorf("%s: %w", args[0], err)
	}
	d, err := connect(ctx, cfg, log, false)
	if err != nil {
		return err
	}
	defer d.close()
	if _, err := d.store.Migrate(ctx); err != nil {
		return err
	}
	codes := make([]string, 0, len(f.Zones))
	for code := range f.Zones {
		codes = append(codes, code)
	}
	sort.Strings(codes)
	for _, code := range codes {
		z, err := domain.CompileZone(code, f.Zones[code])
		if err != nil {
			return fmt.Errorf("zone %s: %w", code, err)
		}
		if err := repo.PutZone(ctx, d.store.DB, z); err != nil {
			return err
		}
	}
	for _, a := range f.Addresses {
		if err := repo.PutAddress(ctx, d.store.DB, &repo.Address{ID: a.AddressID, Zone: a.Zone, Postcode: a.Postcode, HouseNumber: a.HouseNumber}); err != nil {
			return err
		}
	}
	for _, r := range f.Registrations {
		if _, err := repo.PutRegistration(ctx, d.store.DB, &repo.Registration{ResidentID: r.ResidentID, AddressID: r.AddressID}); err != nil {
			return err
		}
	}
	// Permits go through the worker's own handlers, under deterministic request
	// IDs: the same rules as any request, and a second load is a no-op.
	h := &worker.Handlers{Store: d.store, Log: log}
	for _, p := range f.Permits {
		rid := "seed.issue." + p.AddressID
		task, err := jobs.NewPermitIssue(jobs.PermitIssue{RequestID: rid, ResidentID: p.ResidentID, AddressID: p.AddressID})
		if err != nil {
			return err
		}
		if err := h.PermitIssue(ctx, task); err != nil {
			return err
		}
		out, err := repo.GetRequest(ctx, d.store.DB, rid)
		if err != nil {
			return err
		}
		if out.Status != repo.RequestApplied {
			log.Warn("seed permit not issued", "address_id", p.AddressID, "outcome", string(out.Error))
			continue
		}
		var pv jobs.Permit
		if err := json.Unmarshal(out.Result, &pv); err != nil {
			return err
		}
		if p.TopupHours > 0 {
			task, err := jobs.NewPermitTopup(jobs.PermitTopup{RequestID: "seed.topup." + p.AddressID,
				PermitID: pv.ID, Hours: p.TopupHours, PaymentRef: "seed-" + p.AddressID})
			if err != nil {
				return err
			}
			if err := h.PermitTopup(ctx, task); err != nil {
				return err
			}
		}
		fmt.Printf("permit %s  resident %s  address %s\n", pv.ID, p.ResidentID, p.AddressID)
	}
	log.Info("seeded", "zones", len(f.Zones), "addresses", len(f.Addresses), "registrations", len(f.Registrations), "permits", len(f.Permits))
	return nil
}

// redactURL hides the credentials of a connection URL for a log line: the user
// information and a password= parameter (libpq's, and redis-cluster's).
func redactURL(u string) string {
	if i := bytes.IndexByte([]byte(u), '@'); i > 0 {
		if j := bytes.Index([]byte(u), []byte("://")); j > 0 && j < i {
			u = u[:j+3] + "…@" + u[i+1:]
		}
	}
	return passwordParam.ReplaceAllString(u, "${1}password=…")
}

var passwordParam = regexp.MustCompile(`([?&])password=[^&#]*`)
