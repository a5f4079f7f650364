// Package ciconfig checks the GitHub Actions workflows under .github/workflows
// against the repository they run in, so a workflow cannot drift from the code
// unnoticed: a renamed make target, a removed cnimatrix verb or flag, a typo in
// a matrix key or a Makefile variable (make ignores unknown variables
// silently) or an unpinned action is a problem with file and line, found by
// `go test`, not by a red run an hour into CI.
//
// The Makefile is read for its targets and variables; the cnimatrix command
// tree is read from the built binary's --help output, so the check sees the
// verbs and flags the code really has. Run scripts are parsed as bash by
// mvdan.cc/sh (a real shell parser: quotes, continuations, comments,
// redirections, heredocs, $( ... ), loops), and a script that does not parse
// is a problem; a make or cnimatrix command whose target, verb or flags come
// from an unquoted expansion cannot be checked and is a problem too.
package ciconfig
