// Package web holds the browser app, the JavaScript client library and the admin page,
// embedded in the binary so that running Switchboard needs no build step and no files.
package web

import (
	"embed"
	"io/fs"
)

//go:embed static
var static embed.FS

// Assets returns the static files: index.html (the app), admin.html (the admin page) and
// the scripts and styles they load.
func Assets() fs.FS {
	sub, err := fs.Sub(static, "static")
	if err != nil {
		panic(err) // the directory is embedded at build time
	}
	return sub
}
