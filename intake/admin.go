package intake

import (
	"encoding/json"
	"errors"
	"net/http"

	"github.com/parkd/parkd/domain"
	"github.com/parkd/parkd/identity"
	"github.com/parkd/parkd/repo"
)

// Admin endpoints write reference data (zones, the address register, the BRP
// extract) to Postgres directly: they are not requests on a permit, carry no
// balance, and are idempotent by nature (a PUT, or an upsert).

// zoneAnswer is a zone as stored: its code, then its spec with every default
// filled in.
type zoneAnswer struct {
	Code string `json:"code"`
	domain.ZoneSpec
}

// putZone: PUT /v1/admin/zones/{code} (operator). A zone that does not make sense
// is 422 invalid_zone; a body that is not a zone's JSON is 400.
func (s *Server) putZone(w http.ResponseWriter, r *http.Request, _ *identity.Principal) error {
	code := r.PathValue("code")
	var spec domain.ZoneSpec
	b, err := readBody(w, r)
	if err != nil {
		return err
	}
	if err := decodeBody(b, &spec); err != nil {
		return err
	}
	if err := givenZoneDefaults(b, &spec); err != nil {
		return err
	}
	if err := text("name", spec.Name); err != nil {
		return err
	}
	if err := text("time_zone", spec.TimeZone); err != nil {
		return err
	}
	z, err := domain.CompileZone(code, spec)
	if err != nil {
		return err
	}
	ctx, cancel := dbCtx(r.Context())
	defer cancel()
	if err := repo.PutZone(ctx, s.Store.DB, z); err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, zoneAnswer{Code: z.Code, ZoneSpec: z.Spec})
	return nil
}

// givenZoneDefaults refuses a zero or empty value given for a zone setting
// whose absence means its default (ZoneSpec's zero): left out, the default
// is filled in (openapi.yaml), but "ending_notice_minutes": 0 is a value out
// of range, not a request for the default. A number given as 0 is made -1,
// so that the rule (domain.CompileZone) refuses it in its own words, naming
// the setting and its range; an empty text is refused here.
func givenZoneDefaults(body []byte, spec *domain.ZoneSpec) error {
	var given struct {
		MaxSessionMinutes        *int    `json:"max_session_minutes"`
		MaxPlanAheadDays         *int    `json:"max_plan_ahead_days"`
		AnnualPurchaseLimitHours *int    `json:"annual_purchase_limit_hours"`
		AnnualUsageLimitHours    *int    `json:"annual_usage_limit_hours"`
		EndingNoticeMinutes      *int    `json:"ending_notice_minutes"`
		TimeZone                 *string `json:"time_zone"`
		YearStarts               *string `json:"year_starts"`
		DefaultEnd               *string `json:"default_end"`
	}
	_ = json.Unmarshal(body, &given) // decoded once already: it reads
	for _, f := range []struct {
		given *int
		field *int
	}{
		{given.MaxSessionMinutes, &spec.MaxSessionMinutes},
		{given.MaxPlanAheadDays, &spec.MaxPlanAheadDays},
		{given.AnnualPurchaseLimitHours, &spec.AnnualPurchaseLimitHours},
		{given.AnnualUsageLimitHours, &spec.AnnualUsageLimitHours},
		{given.EndingNoticeMinutes, &spec.EndingNoticeMinutes},
	} {
		if f.given != nil && *f.given == 0 {
			*f.field = -1
		}
	}
	for _, f := range []struct {
		name  string
		given *string
	}{{"time_zone", given.TimeZone}, {"year_starts", given.YearStarts}, {"default_end", given.DefaultEnd}} {
		if f.given != nil && *f.given == "" {
			return domain.Reject(domain.CodeInvalidZone, "%s must not be empty (leave it out for the default)", f.name)
		}
	}
	return nil
}

// addressBody is an address of the register (openapi.yaml). Zone null means
// the address lies in no permit zone.
type addressBody struct {
	AddressID   string  `json:"address_id"`
	Zone        *string `json:"zone"`
	Postcode    *string `json:"postcode,omitempty"`
	HouseNumber *string `json:"house_number,omitempty"`
}

// putAddress: POST /v1/admin/addresses (operator). zone is required; JSON null
// says the address lies in no permit zone (so no permit can be issued for it).
func (s *Server) putAddress(w http.ResponseWriter, r *http.Request, _ *identity.Principal) error {
	var f struct {
		AddressID   *string         `json:"address_id"`
		Zone        json.RawMessage `json:"zone"`
		Postcode    *string         `json:"postcode"`
		HouseNumber *string         `json:"house_number"`
	}
	if err := decodeJSON(w, r, &f); err != nil {
		return err
	}
	id, err := identifier("address_id", f.AddressID)
	if err != nil {
		return err
	}
	if len(f.Zone) == 0 {
		return badRequest("zone", "is required (null for an address in no permit zone)")
	}
	var zone *string
	if err := json.Unmarshal(f.Zone, &zone); err != nil {
		return badRequest("zone", "want a zone code or null")
	}
	if zone != nil {
		if err := text("zone", *zone); err != nil {
			return err
		}
		if !domain.ValidZoneCode(*zone) {
			return errNotFound("zone %s not found", truncate(*zone, 40))
		}
	}
	for _, f := range []struct {
		name string
		v    *string
	}{{"postcode", f.Postcode}, {"house_number", f.HouseNumber}} {
		if err := optionalText(f.name, f.v); err != nil {
			return err
		}
		if f.v != nil && len(*f.v) > 32 {
			return badRequest(f.name, "must be at most 32 characters")
		}
	}
	a := &repo.Address{ID: id, Zone: zone, Postcode: f.Postcode, HouseNumber: f.HouseNumber}
	ctx, cancel := dbCtx(r.Context())
	defer cancel()
	if err := repo.PutAddress(ctx, s.Store.DB, a); err != nil {
		if errors.Is(err, repo.ErrNotFound) {
			return errNotFound("zone %s not found", *zone)
		}
		return err
	}
	writeJSON(w, http.StatusCreated, addressBody{AddressID: id, Zone: zone, Postcode: f.Postcode, HouseNumber: f.HouseNumber})
	return nil
}

type registrationBody struct {
	ResidentID string `json:"resident_id"`
	AddressID  string `json:"address_id"`
}

// putRegistration: POST /v1/admin/registrations (operator): one line of a BRP
// extract. Recording it twice is one registration.
func (s *Server) putRegistration(w http.ResponseWriter, r *http.Request, _ *identity.Principal) error {
	var f struct {
		ResidentID *string `json:"resident_id"`
		AddressID  *string `json:"address_id"`
	}
	if err := decodeJSON(w, r, &f); err != nil {
		return err
	}
	resident, err := identifier("resident_id", f.ResidentID)
	if err != nil {
		return err
	}
	address, err := identifier("address_id", f.AddressID)
	if err != nil {
		return err
	}
	ctx, cancel := dbCtx(r.Context())
	defer cancel()
	if _, err := repo.PutRegistration(ctx, s.Store.DB, &repo.Registration{ResidentID: resident, AddressID: address}); err != nil {
		if errors.Is(err, repo.ErrNotFound) {
			return errNotFound("address %s not found", address)
		}
		return err
	}
	writeJSON(w, http.StatusCreated, registrationBody{ResidentID: resident, AddressID: address})
	return nil
}
