package ciconfig

import (
	"context"
	"fmt"
	"maps"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"

	"gopkg.in/yaml.v3"

	"github.com/cnimatrix/cnimatrix/internal/matrix"
)

// Checker checks workflows against one repository.
type Checker struct {
	Root string    // the repository: files the workflows name are looked up here
	Make *Makefile // the repository's Makefile
	CLI  *Command  // the cnimatrix command tree
}

// New reads root/Makefile and the command tree of the cnimatrix binary.
func New(ctx context.Context, root, binary string) (*Checker, error) {
	mf, err := LoadMakefile(filepath.Join(root, "Makefile"))
	if err != nil {
		return nil, err
	}
	cli, err := LoadCLI(ctx, binary)
	if err != nil {
		return nil, fmt.Errorf("read the cnimatrix command tree: %w", err)
	}
	return &Checker{Root: root, Make: mf, CLI: cli}, nil
}

// Dir checks every workflow (*.yml, *.yaml) in dir. A dir without workflows
// is an error: a check of nothing would pass.
func (c *Checker) Dir(dir string) ([]*matrix.LineError, error) {
	var files []string
	for _, pat := range []string{"*.yml", "*.yaml"} {
		m, err := filepath.Glob(filepath.Join(dir, pat))
		if err != nil {
			return nil, err
		}
		files = append(files, m...)
	}
	if len(files) == 0 {
		return nil, fmt.Errorf("no workflow (*.yml, *.yaml) in %s", dir)
	}
	sort.Strings(files)
	var all []*matrix.LineError
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			return nil, fmt.Errorf("read workflow: %w", err)
		}
		all = append(all, c.Workflow(f, data)...)
	}
	return all, nil
}

type problems struct {
	file string
	list []*matrix.LineError
}

func (p *problems) add(line int, format string, args ...any) {
	p.list = append(p.list, &matrix.LineError{File: p.file, Line: line, Msg: fmt.Sprintf(format, args...)})
}

// Workflow checks one workflow file's content; file names it in problems.
func (c *Checker) Workflow(file string, data []byte) []*matrix.LineError {
	p := &problems{file: file}
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		p.add(0, "not YAML: %v", err)
		return p.list
	}
	if doc.Kind != yaml.DocumentNode || len(doc.Content) == 0 || doc.Content[0].Kind != yaml.MappingNode {
		p.add(0, "not a workflow: the document is not a mapping")
		return p.list
	}
	root := doc.Content[0]
	if get(root, "on") == nil {
		p.add(root.Line, "no on: (the events that run the workflow)")
	}
	jobs := get(root, "jobs")
	if jobs == nil || jobs.Kind != yaml.MappingNode || len(jobs.Content) == 0 {
		p.add(root.Line, "no jobs")
		return p.list
	}
	names := map[string]bool{}
	for i := 0; i+1 < len(jobs.Content); i += 2 {
		names[jobs.Content[i].Value] = true
	}
	wfEnv := keys(get(root, "env"))
	c.checkFileRefs(p, get(root, "env"))
	for i := 0; i+1 < len(jobs.Content); i += 2 {
		c.job(p, jobs.Content[i], jobs.Content[i+1], names, wfEnv)
	}
	sort.SliceStable(p.list, func(a, b int) bool { return p.list[a].Line < p.list[b].Line })
	return p.list
}

func (c *Checker) job(p *problems, key, j *yaml.Node, jobNames map[string]bool, wfEnv map[string]bool) {
	name := key.Value
	if j.Kind != yaml.MappingNode {
		p.add(key.Line, "job %s: not a mapping", name)
		return
	}
	var needs []string
	if n := get(j, "needs"); n != nil {
		for _, v := range scalars(n) {
			if !jobNames[v.Value] {
				p.add(v.Line, "job %s: needs %q, which is not a job of this workflow", name, v.Value)
			}
			needs = append(needs, v.Value)
		}
	}
	c.checkExpressions(p, name, j, needs, wfEnv)
	if u := get(j, "uses"); u != nil { // a reusable workflow: no steps of its own
		checkUses(p, u)
		return
	}
	if ro := get(j, "runs-on"); ro == nil || (ro.Kind == yaml.ScalarNode && strings.TrimSpace(ro.Value) == "") {
		p.add(key.Line, "job %s: no runs-on", name)
	}
	c.checkFileRefs(p, get(j, "env"))
	if st := get(j, "strategy"); st != nil {
		if m := get(st, "matrix"); m != nil && m.Kind == yaml.MappingNode {
			for i := 0; i+1 < len(m.Content); i += 2 {
				if k := m.Content[i].Value; k == "include" || k == "exclude" {
					for _, e := range m.Content[i+1].Content {
						c.checkFileRefs(p, e)
					}
				}
			}
		}
	}
	steps := get(j, "steps")
	if steps == nil || steps.Kind != yaml.SequenceNode || len(steps.Content) == 0 {
		p.add(key.Line, "job %s: no steps", name)
		return
	}
	jobDir := ""
	if d := get(get(get(j, "defaults"), "run"), "working-directory"); d != nil {
		jobDir = d.Value
	}
	for n, s := range steps.Content {
		if s.Kind != yaml.MappingNode {
			p.add(s.Line, "job %s, step %d: not a mapping", name, n+1)
			continue
		}
		c.checkFileRefs(p, get(s, "env"))
		u, r := get(s, "uses"), get(s, "run")
		switch {
		case u != nil && r != nil:
			p.add(s.Line, "job %s, step %d: both uses and run", name, n+1)
		case u == nil && r == nil:
			p.add(s.Line, "job %s, step %d: neither uses nor run", name, n+1)
		case u != nil:
			checkUses(p, u)
		default:
			if sh := get(s, "shell"); sh != nil && !strings.HasPrefix(sh.Value, "bash") && !strings.HasPrefix(sh.Value, "sh") {
				continue // not a shell script this check can read
			}
			dir := jobDir
			if d := get(s, "working-directory"); d != nil {
				dir = d.Value
			}
			if dir != "" && path.Clean(dir) != "." {
				p.add(r.Line, "job %s, step %d: runs in %s: its make and cnimatrix commands cannot be checked against this repository", name, n+1, dir)
				continue
			}
			first := r.Line
			if r.Style&(yaml.LiteralStyle|yaml.FoldedStyle) != 0 {
				first++ // a block scalar's text starts below its indicator
			}
			c.script(p, first, r.Value)
		}
	}
}

var (
	exprRE    = regexp.MustCompile(`\$\{\{(.*?)\}\}`)
	matrixRE  = regexp.MustCompile(`\bmatrix\.([A-Za-z_][\w-]*)`)
	needsRE   = regexp.MustCompile(`\bneeds\.([A-Za-z_][\w-]*)`)
	envRefRE  = regexp.MustCompile(`\benv\.([A-Za-z_]\w*)`)
	actionRE  = regexp.MustCompile(`^[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+(?:/[^@\s]+)?@(\S+)$`)
	pinnedRE  = regexp.MustCompile(`^(?:v\d+(?:\.\d+){0,2}|[0-9a-f]{40})$`)
	dockerRef = regexp.MustCompile(`^docker://[^\s:@]+(?:/[^\s:@]+)*(?::([\w][\w.-]*)|@sha256:[0-9a-f]{64})$`)
)

// checkExpressions checks the matrix, needs and env names that the job's
// ${{ }} expressions and if: conditions use: a typo there is an empty string
// at run time, not an error.
func (c *Checker) checkExpressions(p *problems, name string, j *yaml.Node, needs []string, wfEnv map[string]bool) {
	mkeys := map[string]bool{}
	dynamic := false
	if m := get(get(j, "strategy"), "matrix"); m != nil {
		if m.Kind != yaml.MappingNode {
			dynamic = true // fromJSON(...): keys known only at run time
		} else {
			for i := 0; i+1 < len(m.Content); i += 2 {
				k, v := m.Content[i].Value, m.Content[i+1]
				if k != "include" && k != "exclude" {
					mkeys[k] = true
					continue
				}
				for _, e := range v.Content {
					for k := range keys(e) {
						mkeys[k] = true
					}
				}
			}
		}
	}
	env := map[string]bool{}
	for k := range wfEnv {
		env[k] = true
	}
	for k := range keys(get(j, "env")) {
		env[k] = true
	}
	if steps := get(j, "steps"); steps != nil {
		for _, s := range steps.Content {
			for k := range keys(get(s, "env")) {
				env[k] = true
			}
		}
	}
	walk(j, "", func(key string, n *yaml.Node) {
		var exprs []string
		for _, m := range exprRE.FindAllStringSubmatch(n.Value, -1) {
			exprs = append(exprs, m[1])
		}
		if key == "if" && !strings.Contains(n.Value, "${{") {
			exprs = append(exprs, n.Value)
		}
		for _, e := range exprs {
			for _, m := range matrixRE.FindAllStringSubmatch(e, -1) {
				if !dynamic && !mkeys[m[1]] {
					p.add(n.Line, "job %s: matrix.%s is not a key of its strategy.matrix", name, m[1])
				}
			}
			for _, m := range needsRE.FindAllStringSubmatch(e, -1) {
				if !slices.Contains(needs, m[1]) {
					p.add(n.Line, "job %s: needs.%s, but the job does not need %s", name, m[1], m[1])
				}
			}
			for _, m := range envRefRE.FindAllStringSubmatch(e, -1) {
				if !env[m[1]] {
					p.add(n.Line, "job %s: env.%s is not set in the workflow's, the job's or a step's env", name, m[1])
				}
			}
		}
	})
}

// checkUses wants actions pinned: a moving branch can change what runs.
func checkUses(p *problems, u *yaml.Node) {
	v := strings.TrimSpace(u.Value)
	switch {
	case strings.HasPrefix(v, "./"):
	case strings.HasPrefix(v, "docker://"):
		m := dockerRef.FindStringSubmatch(v)
		if m == nil || m[1] == "latest" {
			p.add(u.Line, "uses %s: pin the image to a tag other than latest, or a digest", v)
		}
	default:
		m := actionRE.FindStringSubmatch(v)
		if m == nil {
			p.add(u.Line, "uses %s: want OWNER/REPO[/PATH]@VERSION", v)
		} else if !pinnedRE.MatchString(m[1]) {
			p.add(u.Line, "uses %s: pin %q to a version tag (v4, v4.2.1) or a full commit SHA", v, m[1])
		}
	}
}

// checkFileRefs checks the files that keys named scenario or expectations
// (any case) give literally: a scenario must exist, an expectations file must
// be valid.
func (c *Checker) checkFileRefs(p *problems, m *yaml.Node) {
	if m == nil || m.Kind != yaml.MappingNode {
		return
	}
	for i := 0; i+1 < len(m.Content); i += 2 {
		k, v := strings.ToLower(m.Content[i].Value), m.Content[i+1]
		if v.Kind != yaml.ScalarNode || strings.Contains(v.Value, "$") {
			continue
		}
		switch k {
		case "scenario":
			c.checkScenario(p, v.Line, v.Value)
		case "expectations":
			c.checkExpectations(p, v.Line, v.Value)
		}
	}
}

func (c *Checker) checkScenario(p *problems, line int, file string) {
	if _, err := os.Stat(filepath.Join(c.Root, file)); err != nil {
		p.add(line, "scenario %s: %v", file, err)
	}
}

func (c *Checker) checkExpectations(p *problems, line int, file string) {
	if _, err := matrix.LoadExpectations(filepath.Join(c.Root, file)); err != nil {
		p.add(line, "expectations %s: %v", file, err)
	}
}

// script checks the make and cnimatrix commands of a run: script whose first
// line is line first of the workflow.
func (c *Checker) script(p *problems, first int, script string) {
	// An expression is text by the time the shell runs; keep it one word.
	script = exprRE.ReplaceAllStringFunc(script, func(string) string { return "GHA_EXPRESSION" })
	cmds, err := splitCommands(script)
	if err != nil {
		p.add(first, "run: the script does not parse as shell: %v", err)
		return
	}
	for _, cmd := range cmds {
		ws := commandWords(cmd.words)
		if len(ws) == 0 {
			continue
		}
		line := first + cmd.line
		switch path.Base(ws[0].text) {
		case "make":
			c.checkMake(p, line, ws[1:])
		case "cnimatrix":
			c.checkCLI(p, line, ws[1:])
		case "go":
			if len(ws) > 1 && ws[1].text == "run" {
				for k := 2; k < len(ws); k++ {
					if !strings.HasPrefix(ws[k].text, "-") {
						if path.Base(ws[k].text) == "cnimatrix" {
							c.checkCLI(p, line, ws[k+1:])
						}
						break
					}
				}
			}
		}
	}
}

func (c *Checker) checkMake(p *problems, line int, args []word) {
	for i := 0; i < len(args); i++ {
		a := args[i].text
		switch {
		case a == "--":
		case a == "-C" || a == "-f" || strings.HasPrefix(a, "--directory") || strings.HasPrefix(a, "--file") ||
			strings.HasPrefix(a, "--makefile") || (len(a) > 2 && (strings.HasPrefix(a, "-C") || strings.HasPrefix(a, "-f"))):
			p.add(line, "make %s: another Makefile; the check knows only %s", a, c.Make.Path)
			return
		case a == "-j" || a == "-l":
			if i+1 < len(args) && isDigits(args[i+1].text) {
				i++
			}
		case a == "-o" || a == "-W" || a == "-I":
			i++
		case strings.HasPrefix(a, "-"):
		case isAssignment(a):
			name, val, _ := strings.Cut(a, "=")
			if !c.Make.Variables[name] {
				p.add(line, "make %s=...: %s is not a variable of %s, and make ignores unknown ones silently (variables: %s)",
					name, name, c.Make.Path, strings.Join(sortedKeys(c.Make.Variables), ", "))
			}
			if name == "SCENARIO" && !strings.Contains(val, "$") && !strings.Contains(val, "GHA_EXPRESSION") {
				c.checkScenario(p, line, val)
			}
		case strings.Contains(a, "$") || strings.Contains(a, "GHA_EXPRESSION"):
			p.add(line, "make %s: a target from an expansion cannot be checked", a)
		default:
			if !c.Make.Targets[a] {
				p.add(line, "make %s: no such target in %s (targets: %s)", a, c.Make.Path, strings.Join(sortedKeys(c.Make.Targets), ", "))
			}
		}
	}
}

func (c *Checker) checkCLI(p *problems, line int, args []word) {
	cur := c.CLI
	help := false
	for i := 0; i < len(args); i++ {
		a := args[i]
		t := a.text
		switch {
		case t == "--":
			i = len(args)
		case !a.quoted && (strings.Contains(t, "$") || strings.Contains(t, "GHA_EXPRESSION")):
			p.add(line, "cnimatrix %s: unquoted expansion %s: the words it becomes cannot be checked", cur.Name(), t)
		case strings.HasPrefix(t, "--"):
			name, val, hasVal := strings.Cut(t, "=")
			f, ok := cur.Flags[name]
			if !ok {
				p.add(line, "cnimatrix %s: unknown flag %s (flags: %s)", cur.Name(), name, strings.Join(flagNames(cur), " "))
				continue
			}
			help = help || f.Name == "help"
			if f.TakesValue && !hasVal && i+1 < len(args) {
				i++
				val = args[i].text
			}
			if f.Name == "expectations" && !strings.Contains(val, "$") && !strings.Contains(val, "GHA_EXPRESSION") {
				c.checkExpectations(p, line, val)
			}
		case strings.HasPrefix(t, "-") && len(t) > 1:
			for j := 1; j < len(t); j++ {
				f, ok := cur.Flags["-"+t[j:j+1]]
				if !ok {
					p.add(line, "cnimatrix %s: unknown flag -%s in %s (flags: %s)", cur.Name(), t[j:j+1], t, strings.Join(flagNames(cur), " "))
					break
				}
				help = help || f.Name == "help"
				if f.TakesValue {
					if j == len(t)-1 {
						i++ // -o FILE; otherwise -oFILE
					}
					break
				}
			}
		case len(cur.Subs) > 0:
			sub, ok := cur.Subs[t]
			if !ok {
				if strings.Contains(t, "$") || strings.Contains(t, "GHA_EXPRESSION") {
					p.add(line, "cnimatrix %s: a verb from an expansion (%s) cannot be checked", cur.Name(), t)
				} else {
					p.add(line, "cnimatrix %s: unknown verb %q (verbs: %s)", cur.Name(), t, strings.Join(cur.SubNames(), ", "))
				}
				return
			}
			cur = sub
		}
	}
	if len(cur.Subs) > 0 && !help {
		p.add(line, "cnimatrix %s: no verb, which only prints help (verbs: %s)", cur.Name(), strings.Join(cur.SubNames(), ", "))
	}
}

func flagNames(c *Command) []string {
	var s []string
	for k, f := range c.Flags {
		if k == "--"+f.Name {
			s = append(s, k)
		}
	}
	sort.Strings(s)
	return s
}

// get returns the value of key in mapping m, or nil.
func get(m *yaml.Node, key string) *yaml.Node {
	if m == nil || m.Kind != yaml.MappingNode {
		return nil
	}
	for i := 0; i+1 < len(m.Content); i += 2 {
		if m.Content[i].Value == key {
			return m.Content[i+1]
		}
	}
	return nil
}

func keys(m *yaml.Node) map[string]bool {
	out := map[string]bool{}
	if m == nil || m.Kind != yaml.MappingNode {
		return out
	}
	for i := 0; i+1 < len(m.Content); i += 2 {
		out[m.Content[i].Value] = true
	}
	return out
}

// scalars is a scalar, or the scalars of a sequence.
func scalars(n *yaml.Node) []*yaml.Node {
	if n.Kind == yaml.ScalarNode {
		return []*yaml.Node{n}
	}
	var out []*yaml.Node
	for _, c := range n.Content {
		if c.Kind == yaml.ScalarNode {
			out = append(out, c)
		}
	}
	return out
}

// walk calls f on every scalar value under n with the key it is the value
// of ("" in a sequence).
func walk(n *yaml.Node, key string, f func(key string, n *yaml.Node)) {
	switch n.Kind {
	case yaml.ScalarNode:
		f(key, n)
	case yaml.MappingNode:
		for i := 0; i+1 < len(n.Content); i += 2 {
			walk(n.Content[i+1], n.Content[i].Value, f)
		}
	case yaml.SequenceNode, yaml.DocumentNode:
		for _, c := range n.Content {
			walk(c, "", f)
		}
	}
}

func sortedKeys(m map[string]bool) []string { return slices.Sorted(maps.Keys(m)) }
