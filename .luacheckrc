std = "lua54"
max_line_length = 120
files["spec"] = { std = "+busted", max_line_length = 160 }
exclude_files = { "build", "spec/peers/node_modules" }
