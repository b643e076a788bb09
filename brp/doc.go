// Package brp reads extracts of the population register (BRP) that
// municipalities hand to parkd, and loads the registrations they list (who
// lives at which address: what issuing a permit checks). An extract is a CSV
// file from whatever system or spreadsheet wrote it: UTF-8 with or without a
// byte-order mark, or UTF-16 with one (Excel's "Unicode text"); comma-,
// semicolon- (Dutch-locale Excel) or tab-separated; CRLF, LF or CR line ends;
// quoted or not. Every row is loaded or rejected with its line and reason;
// a file that cannot be read as a whole loads nothing.
package brp
