# expect: 6:15: Variable expansion '$HOME' is not allowed
@{
    Name = 'web1'
    Notes = @"
line one `$ fine
line two uses $HOME
"@
}
