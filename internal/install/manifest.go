// Package install puts a CNI's manifest into a cluster with server-side apply
// (client-go, no kubectl) and waits until its workloads are ready; when they
// are not, the error carries what the pods say about why.
package install

import (
	"bufio"
	"bytes"
	"fmt"
	"regexp"
	"strconv"
	"strings"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	utiljson "k8s.io/apimachinery/pkg/util/json"
	"sigs.k8s.io/yaml"
)

// Object is one object of a manifest.
type Object = unstructured.Unstructured

// ParseManifest splits a multi-document YAML manifest into objects, in file
// order. Empty documents (only comments or whitespace) are skipped and `List`
// kinds (v1 List, FooList with items) are expanded into their items, because
// that is what kubectl does with the same file. Errors name the 1-based
// document index and the line in the whole file.
func ParseManifest(data []byte) ([]*unstructured.Unstructured, error) {
	var out []*unstructured.Unstructured
	for _, d := range splitDocuments(data) {
		objs, err := parseDocument(d)
		if err != nil {
			return nil, err
		}
		out = append(out, objs...)
	}
	return out, nil
}

// document is one YAML document of a manifest with where it starts.
type document struct {
	index int // 1-based, counting every document in the file
	line  int // 1-based line of the document's first line in the file
	body  []byte
}

// splitDocuments splits on "---" separator lines. A YAML parser would do the
// splitting too, but it does not report where each document starts, and the
// start line is what turns "line 3" in a parser error into a line a person can
// find in a 6000-line manifest.
func splitDocuments(data []byte) []document {
	data = bytes.TrimPrefix(data, []byte("\xef\xbb\xbf"))
	var docs []document
	cur := document{index: 1, line: 1}
	var buf bytes.Buffer
	flush := func(nextLine int) {
		cur.body = append([]byte(nil), buf.Bytes()...)
		docs = append(docs, cur)
		buf.Reset()
		cur = document{index: cur.index + 1, line: nextLine}
	}
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 0, 64*1024), 64*1024*1024)
	n := 0
	for sc.Scan() {
		n++
		line := sc.Text()
		trimmed := strings.TrimRight(line, " \t\r")
		switch {
		case trimmed == "---" || strings.HasPrefix(trimmed, "--- ") || strings.HasPrefix(trimmed, "---\t"):
			// "--- # comment" and "--- {inline: doc}" are both legal.
			flush(n)
			rest := strings.TrimSpace(trimmed[3:])
			if rest != "" && !strings.HasPrefix(rest, "#") {
				buf.WriteString(rest)
				buf.WriteByte('\n')
			} else {
				cur.line = n + 1
			}
			continue
		case trimmed == "...":
			// Document end marker: what follows until the next "---" is not content.
			continue
		}
		if buf.Len() == 0 && strings.TrimSpace(line) == "" {
			// Leading blank lines: start the document where its content starts.
			cur.line = n + 1
			continue
		}
		buf.WriteString(line)
		buf.WriteByte('\n')
	}
	flush(n + 1)
	return docs
}

var yamlLineRE = regexp.MustCompile(`line (\d+)`)

func parseDocument(d document) ([]*unstructured.Unstructured, error) {
	where := fmt.Sprintf("document %d (line %d)", d.index, d.line)
	j, err := yaml.YAMLToJSON(d.body)
	if err != nil {
		// Parser lines count from the document start; make them file lines.
		msg := yamlLineRE.ReplaceAllStringFunc(err.Error(), func(m string) string {
			rel, _ := strconv.Atoi(m[len("line "):])
			return fmt.Sprintf("line %d", d.line+rel-1)
		})
		return nil, fmt.Errorf("manifest %s: %s", where, msg)
	}
	j = bytes.TrimSpace(j)
	if len(j) == 0 || bytes.Equal(j, []byte("null")) {
		return nil, nil
	}
	var v any
	// apimachinery's json keeps integers as int64, which unstructured needs.
	if err := utiljson.Unmarshal(j, &v); err != nil {
		return nil, fmt.Errorf("manifest %s: %w", where, err)
	}
	m, ok := v.(map[string]any)
	if !ok {
		return nil, fmt.Errorf("manifest %s: expected a mapping (an object), got %s", where, jsonKind(v))
	}
	u := &unstructured.Unstructured{Object: m}
	if err := validateObject(u); err != nil {
		return nil, fmt.Errorf("manifest %s: %w", where, err)
	}
	if !isList(u) {
		if u.GetName() == "" {
			return nil, fmt.Errorf("manifest %s: %s has no metadata.name", where, u.GetKind())
		}
		return []*unstructured.Unstructured{u}, nil
	}
	items, _ := m["items"].([]any)
	out := make([]*unstructured.Unstructured, 0, len(items))
	for i, it := range items {
		im, ok := it.(map[string]any)
		if !ok {
			return nil, fmt.Errorf("manifest %s: %s item %d: expected a mapping, got %s", where, u.GetKind(), i+1, jsonKind(it))
		}
		iu := &unstructured.Unstructured{Object: im}
		if err := validateObject(iu); err != nil {
			return nil, fmt.Errorf("manifest %s: %s item %d: %w", where, u.GetKind(), i+1, err)
		}
		if isList(iu) {
			return nil, fmt.Errorf("manifest %s: %s item %d: nested lists are not supported", where, u.GetKind(), i+1)
		}
		if iu.GetName() == "" {
			return nil, fmt.Errorf("manifest %s: %s item %d: %s has no metadata.name", where, u.GetKind(), i+1, iu.GetKind())
		}
		out = append(out, iu)
	}
	return out, nil
}

func validateObject(u *unstructured.Unstructured) error {
	av, _ := u.Object["apiVersion"].(string)
	k, _ := u.Object["kind"].(string)
	switch {
	case av == "" && k == "":
		return fmt.Errorf("object has neither apiVersion nor kind")
	case av == "":
		return fmt.Errorf("%s has no apiVersion", k)
	case k == "":
		return fmt.Errorf("object of %s has no kind", av)
	}
	if md, ok := u.Object["metadata"]; ok {
		if _, ok := md.(map[string]any); !ok {
			return fmt.Errorf("%s: metadata is %s, not a mapping", k, jsonKind(md))
		}
	}
	return nil
}

// isList reports whether u is a list of objects to expand, like kubectl does:
// its kind ends in "List" and it has an items array.
func isList(u *unstructured.Unstructured) bool {
	if !strings.HasSuffix(u.GetKind(), "List") {
		return false
	}
	_, ok := u.Object["items"].([]any)
	return ok
}

func jsonKind(v any) string {
	switch v.(type) {
	case nil:
		return "null"
	case []any:
		return "a list"
	case map[string]any:
		return "a mapping"
	case string:
		return "a string"
	case bool:
		return "a boolean"
	default:
		return "a number"
	}
}

// Ref is how messages name an object: "DaemonSet kube-flannel/kube-flannel-ds".
func Ref(u *unstructured.Unstructured) string {
	if ns := u.GetNamespace(); ns != "" {
		return u.GetKind() + " " + ns + "/" + u.GetName()
	}
	return u.GetKind() + " " + u.GetName()
}
