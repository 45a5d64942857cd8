package web

import (
	"io/fs"
	"path"
	"regexp"
	"strings"
	"testing"
)

// TestEveryModuleImportIsEmbedded checks that the browser app's modules, split over
// assets/app/, are all in the binary: a module missing from the embed would only show as a
// blank page.
func TestEveryModuleImportIsEmbedded(t *testing.T) {
	// The specifier of a static ES module import or re-export, when it is relative.
	relativeImport := regexp.MustCompile(`(?m)^\s*(?:import|export)\b[^'"]*?['"](\.{1,2}/[^'"]+)['"]`)
	assets := Assets()
	checked := 0
	err := fs.WalkDir(assets, ".", func(name string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || !strings.HasSuffix(name, ".js") {
			return err
		}
		src, err := fs.ReadFile(assets, name)
		if err != nil {
			return err
		}
		for _, m := range relativeImport.FindAllStringSubmatch(string(src), -1) {
			target := path.Join(path.Dir(name), m[1])
			if _, err := fs.Stat(assets, target); err != nil {
				t.Errorf("%s imports %s: %v", name, m[1], err)
			}
			checked++
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if checked < 10 {
		t.Fatalf("checked %d imports; the app's modules were not found", checked)
	}
	if _, err := fs.Stat(assets, "assets/app.js"); err != nil {
		t.Fatalf("index.html loads /assets/app.js: %v", err)
	}
}
