package intake

import (
	"context"
	"errors"
	"net/http"

	"github.com/parkd/parkd/domain"
	"github.com/parkd/parkd/identity"
	"github.com/parkd/parkd/jobs"
	"github.com/parkd/parkd/repo"
)

// Favourites (DOMAIN.md "Favourites") are written directly, not queued
// (openapi.yaml): they change no balance and no right. The {plate} of their
// path is a plate like any other: ServeMux hands it over URL-decoded, and
// domain.NormalizePlate makes "ab-12-cd" and "AB 12 CD" one favourite.

// listFavourites: GET /v1/permits/{permit_id}/favourites (resident). An ended
// permit has none: they were deleted when it ended.
func (s *Server) listFavourites(w http.ResponseWriter, r *http.Request, p *identity.Principal) error {
	pm, err := s.permitFor(r, p)
	if err != nil {
		return err
	}
	ctx, cancel := dbCtx(r.Context())
	defer cancel()
	rows, err := repo.PermitFavourites(ctx, s.Store.DB, pm.ID)
	if err != nil {
		return err
	}
	out := make([]jobs.Favourite, len(rows))
	for i := range rows {
		out[i] = rows[i].View()
	}
	writeJSON(w, http.StatusOK, map[string]any{"favourites": out})
	return nil
}

// putFavourite: PUT /v1/permits/{permit_id}/favourites/{plate} (resident),
// body {"name"}: creates the favourite or renames it. The count is read and the
// row written under the permit's lock, so two PUTs at once cannot make 26, and
// none lands on a permit that is ending (the end takes the same lock).
func (s *Server) putFavourite(w http.ResponseWriter, r *http.Request, p *identity.Principal) error {
	id, err := s.reachPermit(r, p)
	if err != nil {
		return err
	}
	var body struct {
		Name *string `json:"name"`
	}
	if err := decodeJSON(w, r, &body); err != nil {
		return err
	}
	name, err := required("name", body.Name)
	if err != nil {
		return err
	}
	ctx, cancel := dbCtx(r.Context())
	defer cancel()
	var saved *repo.Favourite
	err = s.Store.InTx(ctx, func(ctx context.Context, tx repo.Tx) error {
		pm, err := repo.LockPermit(ctx, tx, id)
		if errors.Is(err, repo.ErrNotFound) {
			return errNotFound("permit %d not found", id)
		}
		if err != nil {
			return err
		}
		existing, err := repo.FavouritePlates(ctx, tx, pm.ID)
		if err != nil {
			return err
		}
		f, err := domain.PlanFavourite(pm.State(), r.PathValue("plate"), name, existing)
		if err != nil {
			return err
		}
		saved, err = repo.SaveFavourite(ctx, tx, pm.ID, f, s.now())
		return err
	})
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, saved.View())
	return nil
}

// deleteFavourite: DELETE /v1/permits/{permit_id}/favourites/{plate}
// (resident). A favourite that is not there (never was, deleted already, or
// gone with its ended permit) is 204 as well: a DELETE retried after its answer
// was lost must not look like a failure.
func (s *Server) deleteFavourite(w http.ResponseWriter, r *http.Request, p *identity.Principal) error {
	id, err := s.reachPermit(r, p)
	if err != nil {
		return err
	}
	plate, err := domain.NormalizePlate(r.PathValue("plate"))
	if err != nil {
		return err
	}
	ctx, cancel := dbCtx(r.Context())
	defer cancel()
	if _, err := repo.DeleteFavourite(ctx, s.Store.DB, id, plate); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}
