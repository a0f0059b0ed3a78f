module github.com/scimcord/scimcord/services/ingest

go 1.26.8

require github.com/scimcord/scimcord/pkg v0.0.0

replace (
	github.com/scimcord/scimcord/pkg => ../../pkg
	github.com/scimcord/scimcord/services/applier => ../applier
	github.com/scimcord/scimcord/services/ingest => ../ingest
	github.com/scimcord/scimcord/services/mapping => ../mapping
)
