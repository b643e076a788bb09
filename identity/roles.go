package identity

// The roles of README "The HTTP API" (and intake/openapi.yaml's bearer
// scheme): what a token's role claim may say.
const (
	RoleResident    = "resident"
	RoleEloket      = "eloket"
	RoleEnforcement = "enforcement"
	RoleOperator    = "operator"
)

// Roles are the four roles, in the order the contract lists them.
var Roles = []string{RoleResident, RoleEloket, RoleEnforcement, RoleOperator}

// rolesText names the roles for messages.
const rolesText = "resident, eloket, enforcement or operator"

// ValidRole reports whether role is one of the four roles.
func ValidRole(role string) bool {
	switch role {
	case RoleResident, RoleEloket, RoleEnforcement, RoleOperator:
		return true
	}
	return false
}
