module github.com/parkd/parkd/deploy/probe

go 1.24
