package domain

import "golang.org/x/text/language"

// DefaultCountry is the country of a plate when a start names none: the
// Netherlands, whose national parking register the sessions go to.
const DefaultCountry = "NL"

// NormalizeCountry checks the country of a plate (DOMAIN.md, Start): an ISO
// 3166-1 alpha-2 code in upper case, "" meaning DefaultCountry. The code must be
// one CLDR (golang.org/x/text/language) knows as a country or territory in use
// today, so groupings (EU, UN), unknown or private-use codes (ZZ, XX, QZ),
// reserved ones without an alpha-3 code (UK, EZ) and codes CLDR replaces by a
// current one (BU, ZR, DD, FX) are invalid_country, as are three-letter and
// numeric codes and lower case.
func NormalizeCountry(raw string) (string, error) {
	if raw == "" {
		return DefaultCountry, nil
	}
	if len(raw) != 2 || raw[0] < 'A' || raw[0] > 'Z' || raw[1] < 'A' || raw[1] > 'Z' {
		return "", Reject(CodeInvalidCountry, "country %q is not two upper-case letters (ISO 3166-1 alpha-2, such as NL or DE)", truncate(raw, 16))
	}
	r, err := language.ParseRegion(raw)
	if err != nil || !r.IsCountry() || r.ISO3() == "ZZZ" || r.Canonicalize() != r {
		return "", Reject(CodeInvalidCountry, "country %s is not an ISO 3166-1 alpha-2 country code in use", raw)
	}
	return raw, nil
}
