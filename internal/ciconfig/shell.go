package ciconfig

import (
	"bytes"
	"fmt"
	"strings"

	"mvdan.cc/sh/v3/syntax"
)

// word is one shell word after quote removal.
type word struct {
	text string
	// quoted: some part was in quotes, so an expansion in it stays one word
	// and an operator character in it is literal.
	quoted bool
}

// simpleCommand is one command of a script: its words and the script line
// (0-based) it starts on.
type simpleCommand struct {
	line  int
	words []word
}

// splitCommands parses a shell script (mvdan.cc/sh, bash dialect) and
// returns its simple commands, those inside $( ... ), loops and conditions
// included, in the order they appear: each with its words after quote
// removal (assignments before the command become words too, for
// commandWords to strip) and the 0-based line it starts on. Redirections
// and heredoc bodies are not words; an expansion is kept as its text.
func splitCommands(script string) ([]simpleCommand, error) {
	f, err := syntax.NewParser(syntax.Variant(syntax.LangBash)).Parse(strings.NewReader(script), "")
	if err != nil {
		return nil, err
	}
	var cmds []simpleCommand
	syntax.Walk(f, func(n syntax.Node) bool {
		call, ok := n.(*syntax.CallExpr)
		if !ok || call == nil {
			return true
		}
		c := simpleCommand{line: int(call.Pos().Line()) - 1}
		for _, a := range call.Assigns {
			if a.Name == nil {
				continue
			}
			val, quoted := "", false
			if a.Value != nil {
				val, quoted = wordText(a.Value)
			}
			c.words = append(c.words, word{text: a.Name.Value + "=" + val, quoted: quoted})
		}
		for _, w := range call.Args {
			text, quoted := wordText(w)
			c.words = append(c.words, word{text: text, quoted: quoted})
		}
		if len(c.words) > 0 {
			cmds = append(cmds, c)
		}
		return true // a $( ... ) in an argument holds commands of its own
	})
	return cmds, nil
}

// wordText is a word after quote removal; quoted says whether some part
// of it was in quotes. Expansions are kept as the script spells them.
func wordText(w *syntax.Word) (text string, quoted bool) {
	var b strings.Builder
	var parts func(ps []syntax.WordPart)
	parts = func(ps []syntax.WordPart) {
		for _, p := range ps {
			switch p := p.(type) {
			case *syntax.Lit:
				b.WriteString(p.Value)
			case *syntax.SglQuoted:
				quoted = true
				b.WriteString(p.Value)
			case *syntax.DblQuoted:
				quoted = true
				parts(p.Parts)
			default:
				b.WriteString(printed(p))
			}
		}
	}
	parts(w.Parts)
	return b.String(), quoted
}

// printed is a node as the script spells it.
func printed(n syntax.Node) string {
	var buf bytes.Buffer
	if err := syntax.NewPrinter().Print(&buf, n); err != nil {
		return fmt.Sprintf("<%T>", n)
	}
	return buf.String()
}

func isDigits(s string) bool {
	if s == "" {
		return false
	}
	for _, r := range s {
		if r < '0' || r > '9' {
			return false
		}
	}
	return true
}

// commandWords strips what runs a command rather than being it: assignments,
// keywords (if, then, do, !, ...), sudo and env with their options. It
// returns the command word and its arguments, or nil.
func commandWords(ws []word) []word {
	for len(ws) > 0 {
		t := ws[0].text
		switch {
		case isAssignment(t): // env "PATH=$PATH" make: quoted or not
			ws = ws[1:]
		case ws[0].quoted: // "if" is a command name, not a keyword
			return ws
		case t == "for" || t == "case" || t == "select" || t == "function":
			return nil // a loop's list or a pattern, not a command
		case t == "if" || t == "then" || t == "else" || t == "elif" || t == "do" || t == "while" ||
			t == "until" || t == "!" || t == "{" || t == "}" || t == "time" || t == "exec" ||
			t == "command" || t == "nohup" || t == "$" || t == "fi" || t == "done" || t == "esac":
			ws = ws[1:]
		case t == "sudo":
			ws = skipOptions(ws[1:], "ugpChDrtUT")
		case t == "env":
			ws = skipOptions(ws[1:], "uCS")
		default:
			return ws
		}
	}
	return nil
}

// skipOptions drops leading options; withArg lists the short options whose
// value is the next word.
func skipOptions(ws []word, withArg string) []word {
	for len(ws) > 0 && strings.HasPrefix(ws[0].text, "-") {
		o := ws[0].text
		ws = ws[1:]
		if o == "--" {
			break
		}
		if len(o) == 2 && strings.ContainsRune(withArg, rune(o[1])) && len(ws) > 0 {
			ws = ws[1:]
		}
	}
	return ws
}

func isAssignment(s string) bool {
	name, _, ok := strings.Cut(s, "=")
	return ok && isName(name)
}

func isName(s string) bool {
	if s == "" {
		return false
	}
	for i, r := range s {
		if !(r == '_' || r >= 'A' && r <= 'Z' || r >= 'a' && r <= 'z' || i > 0 && r >= '0' && r <= '9') {
			return false
		}
	}
	return true
}
