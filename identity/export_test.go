package identity

// AcceptedLen is how many verified tokens v remembers.
func AcceptedLen(v *Verifier) int { return v.accepted.Len() }
