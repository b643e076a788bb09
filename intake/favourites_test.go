package intake_test

import (
	"fmt"
	"net/http"
	"sync"
	"testing"

	"github.com/parkd/parkd/domain"
	"github.com/parkd/parkd/identity"
	"github.com/parkd/parkd/intake"
	"github.com/parkd/parkd/jobs"
)

// TestFavourites: a permit's named plates (DOMAIN.md "Favourites",
// openapi.yaml) over HTTP, written directly to Postgres.
func TestFavourites(t *testing.T) {
	e := setup(t, options{})
	type list struct{ Favourites []jobs.Favourite }
	favs := func(e *env, r resident) []jobs.Favourite {
		var l list
		e.mustDo("GET", "/v1/permits/"+r.permit+"/favourites", r.token, nil, http.StatusOK, &l)
		return l.Favourites
	}
	put := func(e *env, r resident, pathPlate, name string) *resp {
		return e.do("PUT", "/v1/permits/"+r.permit+"/favourites/"+pathPlate, r.token, map[string]any{"name": name})
	}

	// The {plate} of the path is URL-decoded and normalised like any plate:
	// ab-12-cd, "AB 12 CD" (%20), "ab–12–cd" (en dashes) and "Äb.12.cd" are one
	// favourite; a PUT on it renames it and keeps when it was created.
	t.Run("one plate however it is written", func(t *testing.T) {
		t.Parallel()
		e := e.in(t)
		r := e.resident(0)
		if got := favs(e, r); len(got) != 0 {
			t.Fatalf("a new permit has favourites: %+v", got)
		}
		var first jobs.Favourite
		e.mustDo("PUT", "/v1/permits/"+r.permit+"/favourites/ab-12-cd", r.token, map[string]any{"name": "  Oma "}, http.StatusOK, &first)
		if first.Plate != "AB12CD" || first.Name != "Oma" || first.CreatedAt.IsZero() {
			t.Fatalf("created %+v, want AB12CD named Oma", first)
		}
		for i, path := range []string{"AB%2012%20CD", "ab%E2%80%9312%E2%80%93cd", "%C3%84b.12.cd"} {
			var f jobs.Favourite
			name := fmt.Sprintf("Oma %d", i)
			e.mustDo("PUT", "/v1/permits/"+r.permit+"/favourites/"+path, r.token, map[string]any{"name": name}, http.StatusOK, &f)
			if f.Plate != "AB12CD" || f.Name != name || !f.CreatedAt.Equal(first.CreatedAt) {
				t.Fatalf("PUT %s: %+v, want AB12CD renamed %q, created %s", path, f, name, first.CreatedAt)
			}
		}
		e.mustDo("PUT", "/v1/permits/"+r.permit+"/favourites/XY-99-Z", r.token, map[string]any{"name": "Buurman"}, http.StatusOK, nil)
		got := favs(e, r)
		if len(got) != 2 || got[0].Plate != "AB12CD" || got[0].Name != "Oma 2" || got[1].Plate != "XY99Z" {
			t.Fatalf("favourites %+v, want AB12CD (Oma 2) then XY99Z", got)
		}
		// Deleted under another spelling of the plate; deleting it again, or a
		// plate never there, is 204 too.
		for range 2 {
			e.mustDo("DELETE", "/v1/permits/"+r.permit+"/favourites/ab%2012%20cd", r.token, nil, http.StatusNoContent, nil)
		}
		e.mustDo("DELETE", "/v1/permits/"+r.permit+"/favourites/NEVER1", r.token, nil, http.StatusNoContent, nil)
		if got := favs(e, r); len(got) != 1 || got[0].Plate != "XY99Z" {
			t.Fatalf("after the delete: %+v", got)
		}
	})

	// Bad input gets a clear error and changes nothing.
	t.Run("refusals", func(t *testing.T) {
		t.Parallel()
		e := e.in(t)
		r := e.resident(0)
		// A Cyrillic А, a slash (%2F), an emoji, a plate of 13: not plates.
		for _, path := range []string{"%D0%90B12CD", "AB%2F12", "%F0%9F%9A%97", "ABCDEFGHIJKLM"} {
			wantError(t, put(e, r, path, "Oma"), http.StatusUnprocessableEntity, string(domain.CodeInvalidPlate))
			wantError(t, e.do("DELETE", "/v1/permits/"+r.permit+"/favourites/"+path, r.token, nil),
				http.StatusUnprocessableEntity, string(domain.CodeInvalidPlate))
		}
		for _, name := range []string{"", "   ", "Oma\nOpa", "a234567890123456789012345678901234567890x"} {
			wantError(t, put(e, r, "AB12CD", name), http.StatusUnprocessableEntity, string(domain.CodeInvalidFavouriteName))
		}
		wantError(t, e.do("PUT", "/v1/permits/"+r.permit+"/favourites/AB12CD", r.token, map[string]any{}),
			http.StatusBadRequest, intake.CodeBadRequest, "name")
		wantError(t, e.do("PUT", "/v1/permits/"+r.permit+"/favourites/AB12CD", r.token, map[string]any{"name": "Oma", "colour": "red"}),
			http.StatusBadRequest, intake.CodeBadRequest)
		wantError(t, e.do("PUT", "/v1/permits/"+r.permit+"/favourites/AB12CD", r.token, `{"name": 7}`),
			http.StatusBadRequest, intake.CodeBadRequest, "name")
		if got := favs(e, r); len(got) != 0 {
			t.Fatalf("refused PUTs wrote %+v", got)
		}
	})

	// 25 at most: a 26th plate is too_many_favourites, renaming one at 25 is
	// fine, and 25 PUTs of new plates at once on a permit with 20 make 25, not
	// more: the count is decided under the permit's lock.
	t.Run("at most 25, also when PUTs race", func(t *testing.T) {
		t.Parallel()
		e := e.in(t)
		r := e.resident(0)
		for i := range 20 {
			e.mustDo("PUT", fmt.Sprintf("/v1/permits/%s/favourites/FAV%02d", r.permit, i), r.token, map[string]any{"name": "n"}, http.StatusOK, nil)
		}
		statuses := make([]int, 25)
		var wg sync.WaitGroup
		for i := range statuses {
			wg.Add(1)
			go func() {
				defer wg.Done()
				res := put(e, r, fmt.Sprintf("RACE%02d", i), "racer")
				statuses[i] = res.Status
				if res.Status != http.StatusOK {
					if code, _ := res.errCode(); res.Status != http.StatusUnprocessableEntity || code != string(domain.CodeTooManyFavourites) {
						t.Errorf("racing PUT %d: %s", i, res)
					}
				}
			}()
		}
		wg.Wait()
		ok := 0
		for _, s := range statuses {
			if s == http.StatusOK {
				ok++
			}
		}
		if got := favs(e, r); ok != 5 || len(got) != domain.MaxFavourites {
			t.Fatalf("%d racing PUTs succeeded, %d favourites; want 5 and 25", ok, len(got))
		}
		wantError(t, put(e, r, "ONEMORE", "Oma"), http.StatusUnprocessableEntity, string(domain.CodeTooManyFavourites))
		var f jobs.Favourite
		e.mustDo("PUT", "/v1/permits/"+r.permit+"/favourites/fav-07", r.token, map[string]any{"name": "Tante"}, http.StatusOK, &f)
		if f.Plate != "FAV07" || f.Name != "Tante" {
			t.Fatalf("renamed at 25: %+v", f)
		}
		if got := favs(e, r); len(got) != domain.MaxFavourites {
			t.Fatalf("renaming at 25 changed the count to %d", len(got))
		}
	})

	// Ending the permit deletes its favourites, in the end's transaction: the
	// table has none of its rows, GET answers [], a PUT is permit_not_active,
	// a DELETE 204. Another permit's favourites stay.
	t.Run("gone when the permit ends", func(t *testing.T) {
		t.Parallel()
		e := e.in(t)
		r, other := e.resident(1), e.resident(0)
		for _, x := range []resident{r, other} {
			for _, p := range []string{"AB12CD", "XY99Z"} {
				e.mustDo("PUT", "/v1/permits/"+x.permit+"/favourites/"+p, x.token, map[string]any{"name": "Oma"}, http.StatusOK, nil)
			}
		}
		el := e.token(identity.RoleEloket, "eloket")
		e.mustDo("POST", "/v1/permits/"+r.permit+"/end?wait=10s", el, map[string]any{"reason": "moved"}, http.StatusOK, nil)
		n, err := e.store.DB.NewSelect().Table("favourites").Where("permit_id = ?", r.permit).Count(e.ctx)
		if err != nil || n != 0 {
			t.Fatalf("the ended permit keeps %d favourites in the table (%v)", n, err)
		}
		if got := favs(e, r); len(got) != 0 {
			t.Fatalf("an ended permit answers favourites %+v", got)
		}
		if got := favs(e, other); len(got) != 2 {
			t.Fatalf("another permit's favourites: %+v", got)
		}
		wantError(t, put(e, r, "AB12CD", "Oma"), http.StatusUnprocessableEntity, string(domain.CodePermitNotActive))
		e.mustDo("DELETE", "/v1/permits/"+r.permit+"/favourites/AB12CD", r.token, nil, http.StatusNoContent, nil)
		if got := favs(e, r); len(got) != 0 {
			t.Fatalf("after a refused PUT: %+v", got)
		}
	})
}
