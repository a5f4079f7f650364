package catalog

import (
	"bytes"
	"fmt"
	"sort"
	"strings"

	"gopkg.in/yaml.v3"
)

// RewriteCalicoPins returns the Calico catalog text data with the sha256 of
// each URL in pins replaced, and every other byte (comments, order, layout)
// kept, so the rewrite reads as a small diff. It edits the text at the
// positions the YAML parser reports instead of re-encoding the document,
// which would reflow the file.
func RewriteCalicoPins(data []byte, pins map[string]string) ([]byte, error) {
	for u, p := range pins {
		if p != "" && !sha256RE.MatchString(p) {
			return nil, fmt.Errorf("pin for %s: %q is not a sha256", u, p)
		}
	}
	var root yaml.Node
	if err := yaml.Unmarshal(data, &root); err != nil {
		return nil, fmt.Errorf("calico catalog: %w", err)
	}
	type edit struct {
		line, col int // 1-based, of the value token
		oldLen    int // bytes of the token as written
		pin       string
	}
	var edits []edit
	found := map[string]bool{}
	var walk func(n *yaml.Node) error
	walk = func(n *yaml.Node) error {
		if n.Kind == yaml.MappingNode {
			var urlV, shaV *yaml.Node
			for i := 0; i+1 < len(n.Content); i += 2 {
				switch n.Content[i].Value {
				case "url":
					urlV = n.Content[i+1]
				case "sha256":
					shaV = n.Content[i+1]
				}
			}
			if urlV != nil {
				if pin, ok := pins[urlV.Value]; ok {
					if shaV == nil {
						return fmt.Errorf("line %d: %s has no sha256 field to rewrite; add `sha256: \"\"` after its url", urlV.Line, urlV.Value)
					}
					found[urlV.Value] = true
					l := len(shaV.Value)
					switch shaV.Style {
					case yaml.DoubleQuotedStyle, yaml.SingleQuotedStyle:
						l += 2
					case 0:
					default:
						return fmt.Errorf("line %d: sha256 of %s: write it as a plain or quoted string", shaV.Line, urlV.Value)
					}
					edits = append(edits, edit{shaV.Line, shaV.Column, l, pin})
				}
			}
		}
		for _, c := range n.Content {
			if err := walk(c); err != nil {
				return err
			}
		}
		return nil
	}
	if err := walk(&root); err != nil {
		return nil, fmt.Errorf("calico catalog: %w", err)
	}
	var missing []string
	for u := range pins {
		if !found[u] {
			missing = append(missing, u)
		}
	}
	if len(missing) > 0 {
		sort.Strings(missing)
		return nil, fmt.Errorf("calico catalog has no file %s", strings.Join(missing, ", "))
	}
	lines := bytes.SplitAfter(data, []byte("\n"))
	for _, e := range edits {
		ln := lines[e.line-1]
		start := e.col - 1
		if start+e.oldLen > len(ln) {
			return nil, fmt.Errorf("calico catalog: line %d: sha256 value is not on one line", e.line)
		}
		var b []byte
		b = append(b, ln[:start]...)
		b = append(b, '"')
		b = append(b, e.pin...)
		b = append(b, '"')
		b = append(b, ln[start+e.oldLen:]...)
		lines[e.line-1] = b
	}
	out := bytes.Join(lines, nil)
	// Check the result says what was asked, so a layout this code did not
	// foresee fails here rather than writing a wrong catalog.
	c, err := ParseCalico(out)
	if err != nil {
		return nil, fmt.Errorf("rewritten catalog is invalid: %w", err)
	}
	for _, v := range c.Versions {
		for _, f := range v.Files() {
			if p, ok := pins[f.URL]; ok && f.SHA256 != p {
				return nil, fmt.Errorf("rewritten catalog pins %s to %q, want %q", f.URL, f.SHA256, p)
			}
		}
	}
	return out, nil
}
