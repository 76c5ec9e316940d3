// Command hello is the smallest main package; the tests of BuildBinaries build it.
package main

import "fmt"

func main() { fmt.Println("hello") }
