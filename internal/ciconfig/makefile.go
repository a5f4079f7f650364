package ciconfig

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"regexp"
	"strings"
)

// Makefile is what a workflow may name in a make command line.
type Makefile struct {
	Path      string
	Targets   map[string]bool
	Variables map[string]bool
}

var (
	// "a b: deps" but not "A := x" (the colon of an assignment).
	ruleRE = regexp.MustCompile(`^([A-Za-z0-9_./%-]+(?:[ \t]+[A-Za-z0-9_./%-]+)*)[ \t]*:(?:[^=]|$)`)
	varRE  = regexp.MustCompile(`^(?:(?:export|override)[ \t]+)*([A-Za-z_][A-Za-z0-9_]*)[ \t]*(?:\?=|:::=|::=|:=|\+=|!=|=)`)
)

// LoadMakefile reads the targets and the variables a Makefile assigns.
// Recipe lines (tab-indented) are skipped; include directives are not
// followed, as this repository's Makefile has none.
func LoadMakefile(path string) (*Makefile, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read makefile: %w", err)
	}
	mf := &Makefile{Path: path, Targets: map[string]bool{}, Variables: map[string]bool{}}
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, "\t") || strings.HasPrefix(strings.TrimSpace(line), "#") {
			continue
		}
		if m := varRE.FindStringSubmatch(line); m != nil {
			mf.Variables[m[1]] = true
			continue
		}
		if m := ruleRE.FindStringSubmatch(line); m != nil {
			for _, t := range strings.Fields(m[1]) {
				// Special targets (.PHONY) and pattern rules are not verbs.
				if !strings.HasPrefix(t, ".") && !strings.Contains(t, "%") {
					mf.Targets[t] = true
				}
			}
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("read makefile %s: %w", path, err)
	}
	if len(mf.Targets) == 0 {
		return nil, fmt.Errorf("makefile %s: no targets found", path)
	}
	return mf, nil
}
