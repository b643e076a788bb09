package intake

import (
	_ "embed"
	"net/http"
)

// OpenAPI is the OpenAPI 3 description of the intake's HTTP API. Tests check real
// answers against it, so it cannot drift from what the code does.
//
//go:embed openapi.yaml
var OpenAPI []byte

func serveOpenAPI(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "application/yaml")
	_, _ = w.Write(OpenAPI)
}
