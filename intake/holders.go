package intake

import (
	"context"
	"encoding/json"
	"sync/atomic"

	lru "github.com/hashicorp/golang-lru/v2"

	"github.com/parkd/parkd/repo"
)

// Sizes of the holder caches. Measured at about 165 bytes a permit and 180 a
// session with 40-byte subjects (entry, list links, map slot and the string):
// some 3 MB and 12 MB when full, less where a session shares its permit's
// holder string. A miss costs one primary-key read, so the bound trades
// little: what it keeps is the permits residents are using now and the
// sessions of the latest starts, which a stop or change soon after finds.
const (
	permitHolders  = 16384
	sessionHolders = 65536
)

// sessionHolder is what a write on a session needs to know of it: its permit
// and who holds that.
type sessionHolder struct {
	permitID int64
	holder   string
}

// holders remembers who holds a permit and which permit a session is on, what
// reach and sessionWriteFor check every resident's write against. Both never
// change once they exist (see reach), so a remembered answer is as good as a
// fresh read; a permit or session not found is never remembered, since its ID
// may be issued a moment later. Safe for concurrent use.
type holders struct {
	permits  *lru.Cache[int64, string]
	sessions *lru.Cache[int64, sessionHolder]
	// readPermit and readSession ask Postgres on a miss (repo.PermitHolder,
	// repo.SessionHolder); ErrNotFound when there is no such row.
	readPermit  func(ctx context.Context, id int64) (string, error)
	readSession func(ctx context.Context, id int64) (permitID int64, holder string, err error)
	// reads counts the misses that asked Postgres: how a test sees a hit.
	reads atomic.Int64
}

func newHolders(readPermit func(context.Context, int64) (string, error),
	readSession func(context.Context, int64) (int64, string, error)) *holders {
	// New fails only for a size below 1.
	permits, _ := lru.New[int64, string](permitHolders)
	sessions, _ := lru.New[int64, sessionHolder](sessionHolders)
	return &holders{permits: permits, sessions: sessions, readPermit: readPermit, readSession: readSession}
}

// storeHolders are s's holder caches reading from s.Store: the timeout of a
// read is set on a miss only, so that a hit costs no timer.
func storeHolders(s *Server) *holders {
	return newHolders(
		func(ctx context.Context, id int64) (string, error) {
			ctx, cancel := dbCtx(ctx)
			defer cancel()
			return repo.PermitHolder(ctx, s.Store.DB, id)
		},
		func(ctx context.Context, id int64) (int64, string, error) {
			ctx, cancel := dbCtx(ctx)
			defer cancel()
			return repo.SessionHolder(ctx, s.Store.DB, id)
		})
}

// permit is who holds permit id.
func (h *holders) permit(ctx context.Context, id int64) (string, error) {
	if holder, ok := h.permits.Get(id); ok {
		return holder, nil
	}
	h.reads.Add(1)
	holder, err := h.readPermit(ctx, id)
	if err != nil {
		return "", err
	}
	h.permits.Add(id, holder)
	return holder, nil
}

// session is the permit of session id and who holds it.
func (h *holders) session(ctx context.Context, id int64) (sessionHolder, error) {
	if sh, ok := h.sessions.Get(id); ok {
		return sh, nil
	}
	h.reads.Add(1)
	permitID, holder, err := h.readSession(ctx, id)
	if err != nil {
		return sessionHolder{}, err
	}
	h.remember(id, permitID, holder)
	return sessionHolder{permitID: permitID, holder: holder}, nil
}

// remember stores that session id is on permitID, held by holder, and so
// that holder holds permitID.
func (h *holders) remember(id, permitID int64, holder string) {
	h.sessions.Add(id, sessionHolder{permitID: permitID, holder: holder})
	h.permits.Add(permitID, holder)
}

// started remembers the session of an applied start's result (a jobs.Session)
// on permitID, whose holder reach found: a stop or change right after its
// start then needs no read. A result that does not read as a session on
// permitID is left alone.
func (h *holders) started(result json.RawMessage, permitID int64, holder string) {
	var s struct {
		ID       string `json:"id"`
		PermitID string `json:"permit_id"`
	}
	if holder == "" || json.Unmarshal(result, &s) != nil {
		return
	}
	id, ok := repo.ParseID(s.ID)
	if p, pok := repo.ParseID(s.PermitID); !ok || !pok || p != permitID {
		return
	}
	h.remember(id, permitID, holder)
}
