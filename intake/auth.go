package intake

import (
	"context"
	"errors"
	"net/http"

	"github.com/parkd/parkd/identity"
	"github.com/parkd/parkd/repo"
)

// authenticate verifies the bearer token of r (package identity).
func (s *Server) authenticate(r *http.Request) (*identity.Principal, error) {
	tok, err := identity.BearerToken(r.Header.Get("Authorization"))
	if err != nil {
		return nil, errUnauthenticated(err.Error())
	}
	p, err := s.ids.Verify(r.Context(), tok)
	var refusal *identity.Refusal
	if errors.As(err, &refusal) {
		if refusal.Cause != nil {
			s.logger(r).Debug("token refused", "err", refusal.Cause)
		}
		return nil, errUnauthenticated(refusal.Reason)
	}
	return p, err
}

// reach is the one place where a resident's reach is enforced, for every
// endpoint that names a permit, or a session (then session is its ID and
// permitID the session's permit): a resident acts on a permit only when
// parkd's records say it holds it and its token's permits claim, if any, names
// it (identity.Principal.MayActOn). Otherwise 403, whether or not the permit
// exists, so that nobody learns which IDs exist, nor another's session's
// permit. Other roles are not residents' business: the endpoint's roles decide
// for them. Allowed, it returns the permit's holder ("" for other roles: for
// them it is not read).
//
// The holder comes from the intake's cache (holders) when it is there, and a
// remembered holder is as good as a fresh read: no statement of parkd ever
// updates permits.resident_id (nor sessions.permit_id), nor deletes a permit
// or session, and their IDs are identity columns, never given twice. A permit
// not found is never remembered: its ID may be issued a moment later.
func (s *Server) reach(ctx context.Context, p *identity.Principal, permitID, session string) (string, error) {
	if p.Role != identity.RoleResident {
		return "", nil
	}
	var holder string
	if id, ok := repo.ParseID(permitID); ok {
		h, err := s.holders.permit(ctx, id)
		switch {
		case errors.Is(err, repo.ErrNotFound):
		case err != nil:
			return "", err
		default:
			holder = h
		}
	}
	if err := allowed(p, permitID, holder, session); err != nil {
		return "", err
	}
	return holder, nil
}

// allowed is reach's decision once the permit's holder is known ("" for a
// permit that does not exist).
func allowed(p *identity.Principal, permitID, holder, session string) error {
	if p.Role != identity.RoleResident || p.MayActOn(permitID, holder) {
		return nil
	}
	// Narrowed out of its own permit: saying so tells it nothing new.
	narrowed := holder == p.Sub
	switch {
	case session == "" && narrowed:
		return errForbidden("permit " + permitID + " is not among your token's permits")
	case session == "":
		return errForbidden("permit " + permitID + " is not one you hold")
	case narrowed:
		return errForbidden("session " + session + " is on a permit outside your token's permits")
	}
	return errForbidden("session " + session + " is not on a permit you hold")
}
