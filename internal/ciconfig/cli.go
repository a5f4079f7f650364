package ciconfig

import (
	"bytes"
	"context"
	"fmt"
	"maps"
	"os/exec"
	"regexp"
	"slices"
	"strings"
)

// Command is one command of a CLI as its --help describes it.
type Command struct {
	Path []string // e.g. [images build]; empty for the root
	// Flags by spelling ("--out", "-o"), local and inherited.
	Flags map[string]Flag
	Subs  map[string]*Command
}

// Flag is one flag of a command.
type Flag struct {
	Name       string // long name, without dashes
	TakesValue bool   // false for booleans: the next word is not its value
}

// Name is the command as typed after the binary, e.g. "images build".
func (c *Command) Name() string {
	if len(c.Path) == 0 {
		return "(root)"
	}
	return strings.Join(c.Path, " ")
}

// SubNames lists the subcommands, sorted.
func (c *Command) SubNames() []string {
	return slices.Sorted(maps.Keys(c.Subs))
}

var (
	sectionRE = regexp.MustCompile(`^([A-Z][A-Za-z ]*):$`)
	subRE     = regexp.MustCompile(`^\s+([a-z][\w-]*)\s`)
	// "  -o, --out string   ..." or "      --merge   ..." (booleans carry no type).
	flagRE = regexp.MustCompile(`^\s+(?:-([A-Za-z0-9]), )?--([A-Za-z0-9][\w-]*)(?: ([A-Za-z][\w.\[\]]*))?(?:\s{2,}|$)`)
)

// LoadCLI reads the command tree of a cobra binary from the --help output of
// each of its commands.
func LoadCLI(ctx context.Context, binary string) (*Command, error) {
	return loadCommand(ctx, binary, nil, 0)
}

func loadCommand(ctx context.Context, binary string, path []string, depth int) (*Command, error) {
	if depth > 4 {
		return nil, fmt.Errorf("%s %s: commands nested deeper than 4", binary, strings.Join(path, " "))
	}
	args := append(append([]string{}, path...), "--help")
	cmd := exec.CommandContext(ctx, binary, args...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		return nil, fmt.Errorf("%s %s: %w: %s", binary, strings.Join(args, " "), err, strings.TrimSpace(errb.String()))
	}
	c := parseHelp(out.String())
	c.Path = path
	if len(c.Flags) == 0 {
		return nil, fmt.Errorf("%s %s: no flags in the output (not a cobra --help?)", binary, strings.Join(args, " "))
	}
	for name := range c.Subs {
		sub, err := loadCommand(ctx, binary, append(append([]string{}, path...), name), depth+1)
		if err != nil {
			return nil, err
		}
		c.Subs[name] = sub
	}
	return c, nil
}

// parseHelp reads the "Available Commands", "Flags" and "Global Flags"
// sections of cobra's help text.
func parseHelp(text string) *Command {
	c := &Command{Flags: map[string]Flag{}, Subs: map[string]*Command{}}
	section := ""
	for _, line := range strings.Split(text, "\n") {
		if m := sectionRE.FindStringSubmatch(line); m != nil {
			section = m[1]
			continue
		}
		switch section {
		case "Available Commands":
			if m := subRE.FindStringSubmatch(line); m != nil {
				c.Subs[m[1]] = nil
			}
		case "Flags", "Global Flags":
			if m := flagRE.FindStringSubmatch(line); m != nil {
				f := Flag{Name: m[2], TakesValue: m[3] != ""}
				c.Flags["--"+m[2]] = f
				if m[1] != "" {
					c.Flags["-"+m[1]] = f
				}
			}
		}
	}
	return c
}
