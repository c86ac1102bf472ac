// Command euid prints its effective uid. Built static (CGO_ENABLED=0), it
// runs on the host as well as in an Alpine step; a setuid-root copy shows
// whether the setuid bit took effect.
package main

import (
	"fmt"
	"os"
)

func main() { fmt.Println(os.Geteuid()) }
