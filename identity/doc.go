// Package identity says who sent a request to parkd: the four roles of README
// "The HTTP API", the claims a bearer token carries, the verification of such
// a token, and the minting of development tokens.
//
// A Verifier accepts HS256 tokens signed with the shared secret (development,
// tests, an upstream app that holds the secret) and RS256/ES256 tokens signed
// by an identity provider whose key set it fetches from a JWKS URL (OIDC:
// Keycloak, Entra ID), each only with its own kind of key: an HS256 token is
// never checked against a public key, and "none" is never accepted.
//
// A token says who the caller is, not what it holds: a resident acts on the
// permits parkd's own records give it (Principal.MayActOn), and a permits claim
// can only narrow that set.
package identity
