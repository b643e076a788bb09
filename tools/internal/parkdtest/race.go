//go:build race

package parkdtest

const raceEnabled = true
