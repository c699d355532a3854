"""What the marketer reads: `leadbot report`, its HTML page and JSON, `/stats` in the
managers' chat, ad spend and the lead export. Each figure is an aggregate in SQL; a section
module computes its figures and lays them out as `Table`s, which every output shares."""
