package main

import (
	"cmp"
	"fmt"
	"io"
	"strings"
)

// writeUsage is --help: the settings under their groups, each with its environment
// variable and default.
func writeUsage(w io.Writer, settings []setting) {
	fmt.Fprint(w, `Usage: switchboard [flags]

Every flag can also be set by its environment variable; a flag on the command line wins.
docs/configuration.md lists the same settings.
`)
	for _, group := range settingGroups {
		fmt.Fprintf(w, "\n%s:\n", group)
		for _, st := range settings {
			if st.group != group {
				continue
			}
			arg := " value"
			if st.boolean {
				arg = ""
			}
			def := ""
			if st.raw != "" && !(st.boolean && st.raw == "false") {
				def = fmt.Sprintf(", default %q", st.raw)
			}
			fmt.Fprintf(w, "  --%s%s\n        %s (env %s%s)\n", st.name, arg, st.help, envName(st.name), def)
		}
	}
}

// configDocHeader starts docs/configuration.md.
const configDocHeader = `# Configuration

<!-- Generated from the flag set by ` + "`go generate ./cmd/switchboard`" + ` (switchboard --help-markdown); do not edit by hand. A test fails when this file and the flags disagree. -->

Every setting is a flag of ` + "`switchboard`" + ` and an environment variable; a flag on the command
line wins over the environment, and an empty variable counts as unset. A bad value, from either,
stops the node at start with an error that names the flag and the value. ` + "`switchboard --help`" + `
prints the same list.
`

// writeMarkdown writes docs/configuration.md: one table per group, in the flag set's
// order, with the defaults of a machine-independent environment.
func writeMarkdown(w io.Writer) error {
	var c config
	fs, settings := c.flagSet(func(string) string { return "" })
	if _, err := io.WriteString(w, configDocHeader); err != nil {
		return err
	}
	for _, group := range settingGroups {
		fmt.Fprintf(w, "\n## %s\n\n| flag | environment variable | default | meaning |\n| --- | --- | --- | --- |\n", group)
		for _, st := range settings {
			if st.group != group {
				continue
			}
			f := fs.Lookup(st.name) // the flag set, not the list, is what is documented
			def := cmp.Or(st.docDefault, f.DefValue)
			switch {
			case def == "":
				def = "empty"
			default:
				def = "`" + def + "`"
			}
			name := "`--" + f.Name + "`"
			_, err := fmt.Fprintf(w, "| %s | `%s` | %s | %s |\n", name, envName(f.Name), def, strings.ReplaceAll(f.Usage, "|", `\|`))
			if err != nil {
				return err
			}
		}
	}
	return nil
}
