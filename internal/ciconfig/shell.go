package ciconfig

import (
	"strings"
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

// splitCommands splits a shell script into simple commands: it removes
// quotes, joins continuation lines, drops comments, redirections (with their
// targets) and heredoc bodies, and breaks commands at newlines, ; & | ( ).
// It is not a shell: it has what is needed to find the commands a CI script
// runs, and errs towards splitting (a $( ... ) substitution becomes its own
// command, so a make or cnimatrix inside it is still found).
func splitCommands(script string) []simpleCommand {
	var (
		cmds      []simpleCommand
		cur       simpleCommand
		w         strings.Builder
		inWord    bool
		quoted    bool
		line      int
		dropNext  bool     // the next word is a redirection target
		heredocs  []string // delimiters whose bodies start on the next line
		wantDelim bool     // the next word is a heredoc delimiter
	)
	endWord := func() {
		if !inWord {
			return
		}
		text := w.String()
		w.Reset()
		inWord = false
		q := quoted
		quoted = false
		switch {
		case wantDelim:
			wantDelim = false
			heredocs = append(heredocs, strings.TrimPrefix(text, "-"))
		case dropNext:
			dropNext = false
		default:
			if len(cur.words) == 0 {
				cur.line = line
			}
			cur.words = append(cur.words, word{text: text, quoted: q})
		}
	}
	endCommand := func() {
		endWord()
		if len(cur.words) > 0 {
			cmds = append(cmds, cur)
		}
		cur = simpleCommand{}
	}
	rs := []rune(script)
	for i := 0; i < len(rs); i++ {
		r := rs[i]
		switch {
		case r == '\\':
			if i+1 < len(rs) && rs[i+1] == '\n' { // continuation
				i++
				line++
				continue
			}
			if i+1 < len(rs) {
				i++
				w.WriteRune(rs[i])
				inWord, quoted = true, true
			}
		case r == '\'':
			inWord, quoted = true, true
			for i++; i < len(rs) && rs[i] != '\''; i++ {
				if rs[i] == '\n' {
					line++
				}
				w.WriteRune(rs[i])
			}
		case r == '"':
			inWord, quoted = true, true
			for i++; i < len(rs) && rs[i] != '"'; i++ {
				if rs[i] == '\\' && i+1 < len(rs) && strings.ContainsRune("\"\\$`\n", rs[i+1]) {
					i++
					if rs[i] == '\n' {
						line++
						continue
					}
				} else if rs[i] == '\n' {
					line++
				}
				w.WriteRune(rs[i])
			}
		case r == '#' && !inWord:
			for i+1 < len(rs) && rs[i+1] != '\n' {
				i++
			}
		case r == '\n':
			endCommand()
			line++
			if len(heredocs) > 0 {
				i, line = skipHeredocs(rs, i, line, heredocs)
				heredocs = nil
			}
		case r == ' ' || r == '\t':
			endWord()
		case r == '>' || r == '<' || (r == '&' && i+1 < len(rs) && rs[i+1] == '>'):
			// A file descriptor number right before the operator is part of it.
			if inWord && !quoted && isDigits(w.String()) {
				w.Reset()
				inWord = false
			}
			endWord()
			op := string(r)
			for i+1 < len(rs) && strings.ContainsRune("<>&-", rs[i+1]) {
				i++
				op += string(rs[i])
			}
			if strings.HasPrefix(op, "<<") && op != "<<<" {
				wantDelim = true
			} else {
				dropNext = true
			}
		case strings.ContainsRune(";&|()", r):
			endCommand()
		default:
			w.WriteRune(r)
			inWord = true
		}
	}
	endCommand()
	return cmds
}

// skipHeredocs skips the bodies of the heredocs whose delimiters were read on
// the line that ended at rs[i]; it returns the index of the newline after the
// last delimiter line and the line count.
func skipHeredocs(rs []rune, i, line int, delims []string) (int, int) {
	for _, d := range delims {
		for i+1 < len(rs) {
			j := i + 1
			for j < len(rs) && rs[j] != '\n' {
				j++
			}
			body := strings.TrimLeft(string(rs[i+1:j]), "\t")
			i = j
			line++
			if body == d {
				break
			}
		}
	}
	return i, line
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
