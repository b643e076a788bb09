package intake

import (
	"context"
	"net/http"

	"github.com/hibiken/asynq"

	"github.com/parkd/parkd/domain"
	"github.com/parkd/parkd/identity"
	"github.com/parkd/parkd/jobs"
	"github.com/parkd/parkd/repo"
)

// A resident's data (DOMAIN.md "Privacy"): the export of everything parkd
// holds about them, and the erase an operator makes once their permits ended.

// residentFor reads the path's resident ID: an operator may name anyone, a
// resident only itself (403 otherwise, whether or not that resident exists).
func residentFor(r *http.Request, p *identity.Principal) (string, error) {
	id := r.PathValue("resident_id")
	if id == "" || len(id) > 64 {
		return "", badRequest("resident_id", "must be 1-64 characters")
	}
	// A path is text like a body: NUL (%00) and bytes that are not UTF-8 are
	// no resident's ID, and Postgres's text cannot hold NUL.
	if err := text("resident_id", id); err != nil {
		return "", err
	}
	if p.Role == identity.RoleResident && p.Sub != id {
		return "", errForbidden("resident " + id + " is not you")
	}
	return id, nil
}

// exportResident: GET /v1/residents/{resident_id}/export (operator, or that
// resident). Read without a lock: a snapshot as of the read.
func (s *Server) exportResident(w http.ResponseWriter, r *http.Request, p *identity.Principal) error {
	resident, err := residentFor(r, p)
	if err != nil {
		return err
	}
	now := s.now()
	ctx, cancel := dbCtx(r.Context())
	defer cancel()
	out := jobs.Export{ResidentID: resident, Permits: []jobs.Permit{}, Sessions: []jobs.Session{},
		Ledger: map[string][]jobs.LedgerEntry{}, Statements: map[string][]jobs.Statement{}, Favourites: map[string][]jobs.Favourite{}}
	permits, err := repo.ResidentPermits(ctx, s.Store.DB, resident)
	if err != nil {
		return err
	}
	for i := range permits {
		pm := &permits[i]
		id := repo.FormatID(pm.ID)
		// A resident's token with a permits claim sees only those permits
		// here too: the claim narrows every answer, this one included.
		if p.Role == identity.RoleResident && !p.MayActOn(id, pm.ResidentID) {
			continue
		}
		out.Permits = append(out.Permits, pm.View())
		sessions, err := repo.PermitSessions(ctx, s.Store.DB, pm.ID, "", now)
		if err != nil {
			return err
		}
		for j := range sessions {
			out.Sessions = append(out.Sessions, sessions[j].View(now))
		}
		if out.Ledger[id], err = wholeLedger(ctx, s.Store, pm.ID); err != nil {
			return err
		}
		st, err := repo.PermitStatements(ctx, s.Store.DB, pm.ID)
		if err != nil {
			return err
		}
		out.Statements[id] = append([]jobs.Statement{}, st...)
		favs, err := repo.PermitFavourites(ctx, s.Store.DB, pm.ID)
		if err != nil {
			return err
		}
		out.Favourites[id] = make([]jobs.Favourite, len(favs))
		for j := range favs {
			out.Favourites[id][j] = favs[j].View()
		}
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

// wholeLedger is a permit's every ledger entry, newest first, as the ledger's
// pages show them one after another.
func wholeLedger(ctx context.Context, st *repo.Store, permitID int64) ([]jobs.LedgerEntry, error) {
	out := []jobs.LedgerEntry{}
	var before int64
	for {
		rows, err := repo.LedgerPage(ctx, st.DB, permitID, before, MaxLedgerLimit)
		if err != nil {
			return nil, err
		}
		for i := range rows {
			out = append(out, rows[i].View())
		}
		if len(rows) < MaxLedgerLimit {
			return out, nil
		}
		before = rows[len(rows)-1].ID
	}
}

// eraseResidentTasks deletes the tasks in Redis whose payload names a plate
// of the resident's: starts on their permits, plate corrections of their
// sessions. Every permit of theirs has ended, so none of these could still
// do anything but be refused.
func (s *Server) eraseResidentTasks(ctx context.Context, resident string) (int64, error) {
	if s.Redis == nil {
		return 0, nil
	}
	ctx, cancel := dbCtx(ctx)
	defer cancel()
	permits, err := repo.ResidentPermits(ctx, s.Store.DB, resident)
	if err != nil {
		return 0, err
	}
	sessions, err := repo.ResidentSessionIDs(ctx, s.Store.DB, resident)
	if err != nil {
		return 0, err
	}
	theirs := map[string]bool{}
	for _, p := range permits {
		theirs["p"+repo.FormatID(p.ID)] = true
	}
	for _, id := range sessions {
		theirs["s"+id] = true
	}
	ins := asynq.NewInspectorFromRedisClient(s.Redis)
	tasks, err := jobs.ListPlateTasks(ctx, ins)
	if err != nil {
		return 0, err
	}
	var due []jobs.PlateTask
	for _, t := range tasks {
		if (t.PermitID != "" && theirs["p"+t.PermitID]) || (t.SessionID != "" && theirs["s"+t.SessionID]) {
			due = append(due, t)
		}
	}
	return jobs.DeletePlateTasks(ins, due)
}

// eraseResident: POST /v1/residents/{resident_id}/erase (operator): 422
// permit_active while the resident holds an active permit; else the plates of
// all their sessions are erased everywhere in Postgres (as the retention does,
// repo.ErasePlatesOfResident) and their favourites deleted, in one
// transaction under their permits' locks; then the tasks in Redis that name
// their plates are deleted (eraseResidentTasks). The resident, permits,
// sessions, money, ledger and statements stay.
func (s *Server) eraseResident(w http.ResponseWriter, r *http.Request, p *identity.Principal) error {
	resident, err := residentFor(r, p)
	if err != nil {
		return err
	}
	var erased int64
	err = s.Store.InTx(r.Context(), func(ctx context.Context, tx repo.Tx) error {
		permits, err := repo.LockResidentPermits(ctx, tx, resident)
		if err != nil {
			return err
		}
		var active []string
		for _, pm := range permits {
			if pm.Status == domain.PermitActive {
				active = append(active, repo.FormatID(pm.ID))
			}
		}
		if err := domain.MayErase(resident, active); err != nil {
			return err
		}
		if erased, _, err = repo.ErasePlatesOfResident(ctx, tx, resident); err != nil {
			return err
		}
		_, err = repo.DeleteFavouritesOfResident(ctx, tx, resident)
		return err
	})
	if err != nil {
		return err
	}
	tasks, err := s.eraseResidentTasks(r.Context(), resident)
	if err != nil {
		// Postgres is erased and committed; a second erase retries Redis.
		return err
	}
	s.Log.Info("resident erased", "resident_id", resident, "erased_sessions", erased, "redis_tasks_deleted", tasks)
	writeJSON(w, http.StatusOK, map[string]int64{"erased_sessions": erased})
	return nil
}
